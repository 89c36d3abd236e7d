"""`certpost agent enroll` as an operator mistypes it: each refusal is one line on stderr, exit
status 1, no traceback, and — when the mistake is on the mail server's side — the token is not
spent (the same token then enrols)."""

from __future__ import annotations

import http.server
import threading

import httpx
import pytest

from tests.enrolment.test_enrol_command import controller, enroll  # noqa: F401 - the fixture
from tests.support.ports import free_port

pytestmark = pytest.mark.daemons


def one_line(done) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("certpost agent enroll: "), done.stderr
    return lines[0]


def test_unwritable_places_are_refused_before_the_token_is_spent(controller, tmp_path):  # noqa: F811
    api = httpx.Client(base_url=controller.url, verify=False, timeout=60,
                       headers={"Authorization": f"Bearer {controller.wait_token()}"})
    server = api.post("/v1/servers", json={"name": "mx3", "hostname": "mx3.enrol.test",
                                            "software": "postfix-dovecot"}).json()
    made = api.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={}).json()
    pin = f"sha256:{made['controller_tls_fingerprint']}"
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be\n")

    # The configuration's directory cannot be created (a file is in the way).
    line = one_line(enroll("--controller", controller.url, "--token", made["token"], "--pin", pin,
                           "--config", str(blocker / "etc" / "agent.toml")))
    assert "is not a directory" in line and "nothing was sent" in line
    # The state directory cannot be created.
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{blocker / "state"}"\n')
    line = one_line(enroll("--controller", controller.url, "--token", made["token"], "--pin", pin,
                           "--config", str(config)))
    assert "state_dir" in line and "nothing was sent" in line
    assert config.read_text() == f'[agent]\nstate_dir = "{blocker / "state"}"\n'

    # The token was not spent: once the operator fixes the path, the same token enrols.
    config.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    done = enroll("--controller", controller.url, "--token", made["token"], "--pin", pin, "--config", str(config),
                  "--agent-url", "https://127.0.0.1:18751")
    assert done.returncode == 0, done.stderr
    assert api.get(f"/v1/servers/{server['id']}").json()["agent_url"] == "https://127.0.0.1:18751"


def test_a_config_file_that_is_not_utf8(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_bytes(b"\xff\xfe[agent]\n")
    line = one_line(enroll("--controller", "https://127.0.0.1:9", "--token", "cpe_x", "--config", str(config)))
    assert "not UTF-8" in line


class _NotCertpost(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = b"<html>welcome to nginx</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("body", [None, b'{"controller_public_key": null}'])
def test_an_answer_that_is_not_the_controllers(tmp_path, body):
    handler = _NotCertpost
    if body is not None:
        class handler(_NotCertpost):
            def do_POST(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
    port = free_port()
    httpd = http.server.HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "agent.toml"
        config.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
        line = one_line(enroll("--controller", f"http://127.0.0.1:{port}", "--insecure-http", "--token", "cpe_x",
                               "--config", str(config)))
        assert "not a certpost enrolment" in line and "nothing was written" in line
        assert config.read_text() == f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        assert not (tmp_path / "state").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_serve_refuses_a_tls_pair_that_does_not_load_before_migrating(tmp_path, test_ca):
    import os
    import subprocess

    from tests.support import daemons
    from tests.support.pki import write_pem

    one, other = test_ca.issue(["localhost"]), test_ca.issue(["localhost"])
    cert = write_pem(tmp_path / "c.pem", one.cert_pem)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM\n")
    for cert_file, key_file, said in (
            (cert, write_pem(tmp_path / "k2.pem", other.key_pem), "the key is not the certificate's key"),
            (garbage, write_pem(tmp_path / "k1.pem", one.key_pem), "no PEM certificate"),
            (cert, garbage, "not a PEM certificate and its PEM private key")):
        data = tmp_path / f"data-{said[:6].replace(' ', '')}"
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTPOST_")}
        env.update(CERTPOST_DATA_DIR=str(data), CERTPOST_TLS_CERT_FILE=str(cert_file),
                   CERTPOST_TLS_KEY_FILE=str(key_file))
        done = subprocess.run([daemons.certpost_command(), "serve"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and said in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "admin API token" not in done.stdout
        assert not (data / "certpost.db").exists()  # refused before migrating anything


@pytest.mark.parametrize(("controller_url", "expected"), [
    ("https://certpost.example:8443", "https://certpost.example:8443/v1/agent-enrolments"),
    ("https://certpost.example:8443/", "https://certpost.example:8443/v1/agent-enrolments"),
    # CERTPOST_PUBLIC_URL behind a proxy at a path: the printed command names it, and it is kept.
    ("https://proxy.example/certpost", "https://proxy.example/certpost/v1/agent-enrolments"),
])
def test_the_enrolment_url_keeps_the_controllers_path(controller_url, expected):
    from app.agent.enrol import enrolment_url

    assert str(enrolment_url(httpx.URL(controller_url.rstrip("/")))) == expected
