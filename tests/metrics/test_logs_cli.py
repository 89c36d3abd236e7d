"""`certpost serve` as an operator runs it: JSON log lines on stderr, a request id on each, and
no secret in any field (a bearer token, a PEM private key in a body, the metrics token)."""

from __future__ import annotations

import json
import os
import subprocess

import httpx

from tests.support.daemons import certpost_command
from tests.support.logs import json_lines
from tests.support.pki import CA
from tests.support.ports import free_port
from tests.support.serve import ServeProcess

METRICS_TOKEN = "scrape-" + "m" * 40


def start_serve(data_dir, *args: str) -> ServeProcess:
    """`certpost serve` with the metrics token set and the default log format (whatever the
    test runner's environment says), run from the data directory's parent as an operator
    would; ready once the database answers."""
    env = {"CERTPOST_METRICS_TOKEN": METRICS_TOKEN, "CERTPOST_LOG_FORMAT": None}
    return ServeProcess(data_dir, env=env, args=args, cwd=data_dir.parent,
                        log=data_dir.parent / "serve-stderr.log").start(timeout=90, ready="/readyz")


def stop(serve: ServeProcess) -> str:
    serve.stop()
    return serve.log_text()


def test_serve_logs_json_lines_with_request_ids_and_no_secrets(tmp_path):
    issued = CA.create("logs root").issue(["mail.logs.test"])
    serve = start_serve(tmp_path / "data")
    try:
        token = serve.wait_token()
        admin = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=serve.url, timeout=30) as http:
            # A refused upload: a PEM private key in the body, and a certificate that is not its.
            other = CA.create("other").issue(["x.logs.test"])
            refused = http.post("/v1/certificates", headers={**admin, "X-Request-ID": "upload-refused-1"},
                                json={"certificate_pem": other.cert_pem, "private_key_pem": issued.key_pem})
            assert refused.status_code == 422 and refused.headers["x-request-id"] == "upload-refused-1"
            stored = http.post("/v1/certificates", headers=admin,
                               json={"certificate_pem": issued.cert_pem, "private_key_pem": issued.key_pem})
            assert stored.status_code == 201
            forged = "cpt_00000000-0000-0000-0000-000000000000_notarealsecretbutsecretnonetheless"
            assert http.get("/v1/certificates", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
            assert http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
            assert http.get("/metrics", headers={"Authorization": "Bearer " + "w" * 40}).status_code == 401
    finally:
        stderr = stop(serve)

    lines = json_lines(stderr)  # every line, uvicorn's and the migration's included
    for record in lines:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert record["time"].endswith("Z")
    access = [r for r in lines if r["logger"] == "certpost.access"]
    upload = next(r for r in access if r.get("request_id") == "upload-refused-1")
    assert upload["route"] == "/v1/certificates" and upload["status"] == 422 and upload["method"] == "POST"
    assert isinstance(upload["duration_ms"], float | int)
    assert {r["route"] for r in access} >= {"/readyz", "/v1/certificates", "/metrics"}
    assert any(r["logger"].startswith("uvicorn") for r in lines)  # the server's own lines, as JSON too
    secret = token.rsplit("_", 1)[1]
    for leaked in (secret, "notarealsecretbutsecretnonetheless", METRICS_TOKEN, "PRIVATE KEY",
                   issued.key_pem.splitlines()[1]):
        assert leaked not in stderr, leaked


def test_serve_log_format_text_is_plain_lines(tmp_path):
    serve = start_serve(tmp_path / "data", "--log-format", "text")
    try:
        httpx.get(f"{serve.url}/healthz", headers={"X-Request-ID": "plain-1"}, timeout=10)
    finally:
        stderr = stop(serve)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        raise AssertionError(f"a JSON line in text mode: {line}")
    assert any("certpost.access: GET /healthz 200" in line and "[request plain-1]" in line for line in lines)


def test_a_weak_metrics_token_stops_serve_with_one_line_that_does_not_repeat_it(tmp_path):
    env = {**os.environ, "CERTPOST_DATA_DIR": str(tmp_path / "data"), "CERTPOST_METRICS_TOKEN": "guessable secret"}
    done = subprocess.run([certpost_command(), "serve", "--port", str(free_port())], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("certpost: CERTPOST_METRICS_TOKEN: ") and "24 characters" in done.stderr
    assert "guessable" not in done.stderr
