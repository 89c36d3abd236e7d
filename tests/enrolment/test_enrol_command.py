"""`certpost agent enroll` as an operator runs it (issue 10): the real controller (`certpost
serve` over HTTPS, its certificate pinned), the command in a subprocess, then `certpost agent`
started with the configuration the command wrote, and a certificate deployed to it through the
API and served by the real nginx."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from app.enrolment.models import EnrolmentToken
from tests.support import daemons
from tests.support.pki import write_pem
from tests.support.serve import ServeProcess
from tests.support.threads import in_thread
from tests.support.tlsprobe import served_fingerprint

pytestmark = pytest.mark.daemons

PLACEHOLDER = "ed25519:" + "A" * 43 + "="


def enroll(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([daemons.certpost_command(), "agent", "enroll", *args], capture_output=True, text=True,
                          timeout=90, check=False)


def expire(database_url: str, token_id: str) -> None:
    async def run():
        engine = create_async_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(update(EnrolmentToken).where(EnrolmentToken.id == token_id)
                               .values(expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
        await engine.dispose()

    in_thread(asyncio.run, run())


@pytest.fixture
def controller(tmp_path, empty_database, test_ca):
    """`certpost serve` with its own database on the backend under test, serving HTTPS with a
    certificate for localhost from the test CA."""
    issued = test_ca.issue(["localhost"])
    cert = write_pem(tmp_path / "controller.crt", issued.cert_pem)
    key = write_pem(tmp_path / "controller.key", issued.key_pem)
    write_pem(tmp_path / "roots.pem", test_ca.cert_pem)
    data = tmp_path / "controller"
    data.mkdir(mode=0o700)
    env = {"CERTPOST_DATABASE_URL": empty_database, "CERTPOST_TLS_CERT_FILE": str(cert),
           "CERTPOST_TLS_KEY_FILE": str(key), "CERTPOST_TRUST_BUNDLE": str(tmp_path / "roots.pem"),
           "CERTPOST_RETRY_BASE_SECONDS": "0.2", "CERTPOST_RETRY_MAX_SECONDS": "1"}
    serve = ServeProcess(data, env=env, log=tmp_path / "serve.log").start(timeout=90)
    serve.database_url = empty_database
    serve.controller_key = subprocess.run(
        [daemons.certpost_command(), "controller-key"], env=serve.env, capture_output=True, text=True, check=True,
        timeout=60).stdout.strip()
    try:
        yield serve
    finally:
        serve.stop()


@pytest.fixture
def stack():
    """A mail server's files: nginx only, and an agent configuration without the controller's key
    (what an operator writes from docs/agent.md before enrolling)."""
    root = daemons.make_root("certpost-enrol-")
    stack = daemons.write_stack(root, controller_public_key=PLACEHOLDER, hostname="mx1.enrol.test")
    lines = [line for line in stack.agent_config.read_text().splitlines() if "controller_public_key" not in line]
    config = "\n".join(lines) + "\n"
    for section in ("postfix", "dovecot"):
        config = config.replace(f"[{section}]\n", f"[{section}]\nenabled = false\n", 1)
    stack.agent_config.write_text(config)
    agent = daemons.AgentProcess(stack)
    try:
        yield stack, agent
    finally:
        agent.stop()
        daemons.stop_nginx(stack)
        shutil.rmtree(root, ignore_errors=True)


def _wait_applied(api: httpx.Client, server_id: str, generation_at_least: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = api.get(f"/v1/servers/{server_id}").json()
        if server["applied_generation"] >= max(generation_at_least, server["desired_generation"]):
            return server
        time.sleep(0.3)
    raise AssertionError(f"not applied: {api.get(f'/v1/servers/{server_id}/deployments').text}")


def test_enrol_with_a_pinned_controller_then_deploy(controller, stack, test_ca, tmp_path):
    stack, agent = stack
    api = httpx.Client(base_url=controller.url, verify=False, timeout=60,
                       headers={"Authorization": f"Bearer {controller.wait_token()}"})
    server = api.post("/v1/servers", json={"name": "mx1", "hostname": stack.hostname,
                                            "software": "postfix-dovecot"}).json()
    made = api.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={}).json()
    pin = made["controller_tls_fingerprint"]
    assert pin and f"--pin sha256:{pin}" in made["command"]
    agent_url = stack.agent_url
    before = stack.agent_config.read_text()

    # A wrong pin: refused before anything is sent (the token still works after) or written.
    wrong = enroll("--controller", controller.url, "--token", made["token"], "--pin", "sha256:" + "0" * 64,
                   "--config", str(stack.agent_config), "--agent-url", agent_url)
    assert wrong.returncode == 1 and f"not the pinned {'0' * 64}" in wrong.stderr, wrong.stderr
    assert stack.agent_config.read_text() == before and not stack.state_dir.exists()
    # Plain HTTP is refused unless asked for.
    plain = enroll("--controller", controller.url.replace("https", "http"), "--token", made["token"],
                   "--config", str(stack.agent_config))
    assert plain.returncode == 1 and "--insecure-http" in plain.stderr

    # The command as the token's answer prints it (with this test's paths and agent URL).
    done = enroll("--controller", made["controller_url"].replace("http://", "https://"), "--token", made["token"],
                  "--pin", f"sha256:{pin}", "--config", str(stack.agent_config), "--agent-url", agent_url)
    assert done.returncode == 0, done.stderr
    assert "enrolled as the agent of server mx1" in done.stdout
    written = stack.agent_config.read_text()
    assert f'controller_public_key = "{controller.controller_key}"' in written
    assert "[nginx]" in written and before.splitlines()[0] in written  # the rest is kept

    reused = enroll("--controller", controller.url, "--token", made["token"], "--pin", f"sha256:{pin}",
                    "--config", str(tmp_path / "other.toml"))
    assert reused.returncode == 1 and "enrolment_token_used" in reused.stderr
    assert not (tmp_path / "other.toml").exists()

    fingerprint = agent.start()  # the identity the command made is the one the agent serves with
    daemons.start_nginx(stack)
    registered = api.get(f"/v1/servers/{server['id']}").json()
    assert registered["agent_url"] == agent_url and registered["agent_tls_fingerprint"] == fingerprint

    account = api.post("/v1/accounts", json={"name": "shop"}).json()
    api.post("/v1/domains", json={"name": "shop.test", "server_id": server["id"], "account_id": account["id"]})
    issued = test_ca.issue(["webmail.shop.test", "mail.shop.test"])
    cert = api.post("/v1/certificates", json={"certificate_pem": issued.cert_pem, "private_key_pem": issued.key_pem,
                                               "account_id": account["id"]}).json()
    bound = api.put("/v1/domains/shop.test/bindings/webmail", json={"certificate_id": cert["id"]})
    assert bound.status_code in (200, 201), bound.text
    _wait_applied(api, server["id"], api.get(f"/v1/servers/{server['id']}").json()["desired_generation"])
    served = served_fingerprint("127.0.0.1", stack.ports["https"], "https", "webmail.shop.test")
    assert served == cert["fingerprint_sha256"]


def test_enrol_with_a_ca_bundle_and_an_expired_token(controller, tmp_path):
    api = httpx.Client(base_url=controller.url, verify=False, timeout=60,
                       headers={"Authorization": f"Bearer {controller.wait_token()}"})
    server = api.post("/v1/servers", json={"name": "mx2", "hostname": "mx2.enrol.test",
                                            "software": "postfix-dovecot"}).json()
    by_name = controller.url.replace("127.0.0.1", "localhost")
    config = tmp_path / "agent.toml"
    state = tmp_path / "state"
    config.write_text(f'[agent]\nstate_dir = "{state}"  # kept\n')

    stale = api.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={}).json()
    expire(controller.database_url, stale["id"])
    refused = enroll("--controller", by_name, "--token", stale["token"], "--ca-bundle",
                     str(tmp_path / "roots.pem"), "--config", str(config))
    assert refused.returncode == 1 and "enrolment_token_expired" in refused.stderr
    assert not state.exists()

    made = api.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={}).json()
    untrusted = enroll("--controller", by_name, "--token", made["token"], "--config", str(config))
    assert untrusted.returncode == 1 and "certificate" in untrusted.stderr.lower()  # not in the system roots
    done = enroll("--controller", by_name, "--token", made["token"], "--ca-bundle", str(tmp_path / "roots.pem"),
                  "--config", str(config), "--listen", "127.0.0.1:18750", "--agent-url", "https://127.0.0.1:18750")
    assert done.returncode == 0, done.stderr
    written = config.read_text()
    assert f'state_dir = "{state}"  # kept' in written
    assert 'hostname = "mx2.enrol.test"' in written and "port = 18750" in written
    assert oct((state / "tls" / "agent.key").stat().st_mode & 0o777) == "0o600"
    prepared = subprocess.run([daemons.certpost_command(), "agent", "--config", str(config), "--prepare-only"],
                              capture_output=True, text=True, timeout=60, check=False)
    assert prepared.returncode == 0, prepared.stderr
    fingerprint = prepared.stdout.strip().rsplit(" ", 1)[1]
    assert api.get(f"/v1/servers/{server['id']}").json()["agent_tls_fingerprint"] == fingerprint


def test_serve_refuses_half_a_tls_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTPOST_")}
    env.update(CERTPOST_DATA_DIR=str(tmp_path), CERTPOST_TLS_CERT_FILE=str(tmp_path / "missing.crt"))
    done = subprocess.run([daemons.certpost_command(), "serve"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert "set both CERTPOST_TLS_CERT_FILE and CERTPOST_TLS_KEY_FILE" in done.stderr
    assert not (tmp_path / "certpost.db").exists()  # refused before migrating anything
