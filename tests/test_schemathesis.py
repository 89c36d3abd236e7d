"""schemathesis over every operation of the API, as a client sees it: `certpost serve` in a
subprocess on its own fresh database (SQLite or PostgreSQL, as CERTPOST_TEST_DB says), the
`schemathesis` command against it, once with an admin token and once with a customer token.

Positive and negative data, a bounded number of examples per operation (CERTPOST_ST_EXAMPLES).
Any server error, any response whose status, media type or body the OpenAPI document does not
describe, fails the test. The server runs with no worker: nothing it stores is ever pushed or
ordered, so the generated agent URLs and name servers are never contacted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.serve import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = int(os.environ.get("CERTPOST_ST_EXAMPLES", "10"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
PG_ADMIN_URL = os.environ.get("CERTPOST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(errors, asyncio.run, run()))
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _capture(errors, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
        errors.append(exc)


def _certpost(env, *args) -> str:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def served(backend, tmp_path_factory):
    """(base URL, admin token, customer token) of a `certpost serve` on a fresh database."""
    data = tmp_path_factory.mktemp("st") / "data"
    env = {**os.environ, "CERTPOST_DATA_DIR": str(data)}
    env.pop("CERTPOST_DATABASE_URL", None)
    database = None
    if backend == "postgres":
        database = f"certpost_st_{uuid.uuid4().hex[:12]}"
        _pg(f'CREATE DATABASE "{database}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        env["CERTPOST_DATABASE_URL"] = f"{base}/{database}"
    try:
        _certpost(env, "migrate")
        admin = _certpost(env, "tokens", "create", "--role", "admin").strip()
        serve = ServeProcess(data, env=env, args=("--no-worker",), log=data.parent / "serve.log").start(ready="/readyz")
        try:
            customer, seeded = _seed(serve.url, admin)
            yield serve.url, admin, customer, seeded, serve.log
        finally:
            serve.stop()
    finally:
        if database:
            _pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _seed(url: str, admin: str) -> tuple[str, dict[str, list[str]]]:
    """A customer token, and rows for path parameters to name (else nearly every case is a 404)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as client:
        def post(path: str, body: dict, headers: dict | None = None) -> dict:
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 201, response.text
            return response.json()

        account = post("/v1/accounts", {"name": "schemathesis"})["id"]
        customer = post("/v1/tokens", {"role": "customer", "account_id": account})["token"]
        as_customer = {"Authorization": f"Bearer {customer}"}
        server = post("/v1/servers", {"name": "mx", "hostname": "mx.hosting.test", "software": "postfix-dovecot"})
        domains = [f"seed{i}.test" for i in range(3)]
        certificates = []
        for name in domains:
            post("/v1/domains", {"name": name, "server_id": server["id"], "account_id": account})
            cert = post("/v1/certificates/self-signed", {"names": [f"*.{name}", name]}, as_customer)
            certificates.append(cert["id"])
            bound = client.put(f"/v1/domains/{name}/bindings/mail", json={"certificate_id": cert["id"]},
                               headers=as_customer)
            assert bound.status_code == 201, bound.text
    return customer, {"server_id": [server["id"]], "name": domains, "certificate_id": certificates}


def _config(path: Path, seeded: dict[str, list[str]]) -> Path:
    """schemathesis.toml: seeded values for path parameters, half of the time."""
    lines = []
    for parameter, values in seeded.items():
        quoted = ", ".join(f'"{v}"' for v in values)
        lines += [f"[dictionaries.{parameter}]", f"values = [{quoted}]", ""]
    lines.append("[parameters]")
    lines += [f'"path.{p}" = {{ dictionary = "{p}", probability = 0.5 }}' for p in seeded]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("role", ["admin", "customer"])
def test_every_operation_conforms_and_never_fails(served, role, tmp_path):
    url, admin, customer, seeded, log = served
    token = admin if role == "admin" else customer
    config = _config(tmp_path / "schemathesis.toml", seeded)
    report = tmp_path / "junit.xml"
    started = time.monotonic()
    result = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{url}/openapi.json",
         "--checks", CHECKS, "--mode", "all", "--max-examples", str(EXAMPLES),
         "--phases", "examples,coverage,fuzzing", "--seed", "7", "--workers", "1",
         "--suppress-health-check", "all", "--request-timeout", "30",
         "--report", "junit", "--report-junit-path", str(report),
         "-H", f"Authorization: Bearer {token}"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
    )
    elapsed = time.monotonic() - started
    summary = result.stdout[-12000:]
    print(f"schemathesis ({role}) took {elapsed:.0f} s\n{summary}")
    assert result.returncode == 0, f"schemathesis found problems ({role}):\n{summary}\n{log.read_text()[-4000:]}"
