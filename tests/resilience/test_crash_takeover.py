"""A controller killed in the middle of a delivery, or of an order: its lease runs out within
seconds (it is short and was renewed by a heartbeat, not sized for the longest the work could
take), and the restarted controller finishes the work within 30 s of its restart.

Real things throughout: `certpost serve` as a subprocess (SIGKILLed), the real agent with real
Postfix, Dovecot and nginx (tests/support/daemons.py), paused with SIGSTOP so that the
delivery (or the order's HTTP-01 publication) hangs on the agent while the controller holds
the lease, and resumed after the kill; for the order, a Pebble of this module's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.servers.models import Server
from tests.support.daemons import running_stack
from tests.support.pebble import start_pebble, stop_pebble
from tests.support.pki import write_pem
from tests.support.ports import free_port
from tests.support.postgres import private_postgres
from tests.support.serve import REPO, ServeProcess
from tests.support.tlsprobe import served_fingerprint

pytestmark = pytest.mark.daemons

TAKEOVER_LIMIT_SECONDS = 30


@contextlib.contextmanager
def _database(backend: str, data_dir):
    """The service's database: SQLite in its data directory, or a private PostgreSQL."""
    if backend != "postgres":
        yield {}, f"sqlite+aiosqlite:///{data_dir / 'certpost.db'}"
        return
    with private_postgres() as pg:
        yield {"CERTPOST_DATABASE_URL": pg.url}, pg.url


async def _lease(url: str, server_id: str) -> tuple[str | None, object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(Server.deploy_lease_owner, Server.deploy_lease_until)
                                      .where(Server.id == server_id))).one()
            return row[0], row[1]
    finally:
        await engine.dispose()


def _applied(api: httpx.Client, server_id: str) -> bool:
    body = api.get(f"/v1/servers/{server_id}").json()
    return body["applied_generation"] == body["desired_generation"]


async def _wait(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not await asyncio.to_thread(predicate):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_a_delivery_killed_midway_is_taken_over_within_30_s(tmp_path, backend, test_ca):
    data = tmp_path / "data"
    trust = write_pem(tmp_path / "trust.pem", test_ca.cert_pem)
    with _database(backend, data) as (db_env, db_url):
        env = {"CERTPOST_TRUST_BUNDLE": str(trust), **db_env}
        key = (await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "app.cli", "controller-key"], cwd=REPO, check=True, text=True,
            capture_output=True, env={**os.environ, "CERTPOST_DATA_DIR": str(data), **env})).stdout
        with running_stack(key.strip()) as (stack, agent):
            serve = ServeProcess(data, env=env, log=tmp_path / "serve-1.log").start()
            paused = False
            try:
                api = httpx.Client(base_url=serve.url, timeout=30,
                                   headers={"Authorization": f"Bearer {serve.wait_token()}"})
                server = api.post("/v1/servers", json={
                    "name": "crash", "hostname": stack.hostname, "software": "postfix-dovecot",
                    "agent_url": stack.agent_url, "agent_tls_fingerprint": agent.fingerprint}).json()
                account = api.post("/v1/accounts", json={"name": "crash"}).json()
                domain = api.post("/v1/domains", json={"name": "crash.test", "server_id": server["id"],
                                                       "account_id": account["id"]})
                assert domain.status_code == 201, domain.text
                await _wait(lambda: _applied(api, server["id"]), 60, "first delivery")

                issued = test_ca.issue(["mail.crash.test", "webmail.crash.test"])
                cert = api.post("/v1/certificates", json={"certificate_pem": issued.cert_pem,
                                                          "private_key_pem": issued.key_pem,
                                                          "chain_pem": issued.chain_pem,
                                                          "account_id": account["id"]})
                assert cert.status_code == 201, cert.text
                os.kill(agent.process.pid, signal.SIGSTOP)  # the next delivery hangs on the agent
                paused = True
                bound = api.put("/v1/domains/crash.test/bindings/mail", json={"certificate_id": cert.json()["id"]})
                assert bound.status_code == 201, bound.text  # a first bind

                async def claimed():
                    owner, _until = await _lease(db_url, server["id"])
                    return owner

                deadline = time.monotonic() + 20
                while not await claimed():
                    assert time.monotonic() < deadline, "the worker never claimed the delivery"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2)  # well inside the delivery, the lease held
                assert not _applied(api, server["id"])
                serve.kill()
                owner, until = await _lease(db_url, server["id"])
                assert owner is not None, "the killed controller's lease should still be on the row"
            finally:
                if paused:
                    os.kill(agent.process.pid, signal.SIGCONT)
                serve.kill()

            restarted = time.monotonic()
            serve = ServeProcess(data, env=env, log=tmp_path / "serve-2.log").start()
            try:
                api = httpx.Client(base_url=serve.url, timeout=30, headers=api.headers)
                await _wait(lambda: _applied(api, server["id"]), TAKEOVER_LIMIT_SECONDS + 30, "takeover")
                took = time.monotonic() - restarted
                latest = api.get(f"/v1/servers/{server['id']}/deployments").json()["items"][0]
                served = await asyncio.to_thread(served_fingerprint, "127.0.0.1", stack.ports["smtps"], "smtps",
                                                 "mail.crash.test")
            finally:
                serve.stop()
    print(f"\ndeployment applied {took:.1f} s after the restart (lease was held until {until})")
    assert latest["status"] == "applied"
    assert served == issued.fingerprint
    assert took < TAKEOVER_LIMIT_SECONDS, f"took {took:.1f} s"


@pytest.fixture(scope="module")
def pebble(bind_server):
    """A Pebble of this module's own, validating HTTP-01 on the port the stack's nginx serves."""
    server = start_pebble(bind_server.address, http_port=free_port())
    yield server
    stop_pebble(server)


@pytest.mark.acme
async def test_an_order_killed_midway_is_taken_over_within_30_s(tmp_path, backend, pebble):
    data = tmp_path / "data"
    with _database(backend, data) as (db_env, _db_url):
        env = {"CERTPOST_ACME_DIRECTORY_URL": pebble.directory_url, "CERTPOST_ACME_CA_BUNDLE": pebble.ca_bundle,
               "CERTPOST_ACME_POLL_INTERVAL": "0.1", **db_env}
        key = (await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "app.cli", "controller-key"], cwd=REPO, check=True, text=True,
            capture_output=True, env={**os.environ, "CERTPOST_DATA_DIR": str(data), **env})).stdout
        with running_stack(key.strip(), http_port=pebble.http_port) as (stack, agent):
            serve = ServeProcess(data, env=env, log=tmp_path / "serve-1.log").start()
            paused = False
            try:
                admin = {"Authorization": f"Bearer {serve.wait_token()}"}
                api = httpx.Client(base_url=serve.url, timeout=30, headers=admin)
                server = api.post("/v1/servers", json={
                    "name": "crash", "hostname": stack.hostname, "software": "postfix-dovecot",
                    "agent_url": stack.agent_url, "agent_tls_fingerprint": agent.fingerprint}).json()
                account = api.post("/v1/accounts", json={"name": "crash"}).json()
                assert api.post("/v1/domains", json={"name": "z14.test", "server_id": server["id"],
                                                     "account_id": account["id"]}).status_code == 201
                token = api.post("/v1/tokens", json={"role": "customer", "account_id": account["id"]}).json()["token"]
                customer = {"Authorization": f"Bearer {token}"}
                await _wait(lambda: _applied(api, server["id"]), 60, "first delivery")
                os.kill(agent.process.pid, signal.SIGSTOP)  # HTTP-01 publication hangs on the agent
                paused = True
                created = api.post("/v1/certificate-orders", headers=customer,
                                   json={"names": ["webmail.z14.test"], "challenge": "http-01", "bind": ["webmail"]})
                assert created.status_code == 202, created.text
                order_url = f"/v1/certificate-orders/{created.json()['id']}"
                await _wait(lambda: api.get(order_url).json()["status"] == "processing", 20, "order claimed")
                await asyncio.sleep(2)
                assert api.get(order_url).json()["status"] == "processing"
                serve.kill()
            finally:
                if paused:
                    os.kill(agent.process.pid, signal.SIGCONT)
                serve.kill()

            restarted = time.monotonic()
            serve = ServeProcess(data, env=env, log=tmp_path / "serve-2.log").start()
            try:
                api = httpx.Client(base_url=serve.url, timeout=30, headers=admin)
                await _wait(lambda: api.get(order_url).json()["status"] in ("valid", "invalid"),
                            TAKEOVER_LIMIT_SECONDS + 30, "order takeover")
                took = time.monotonic() - restarted
                order = api.get(order_url).json()
            finally:
                serve.stop()
    print(f"\norder finished {took:.1f} s after the restart: {order['status']}")
    assert order["status"] == "valid", order["error"]
    assert took < TAKEOVER_LIMIT_SECONDS, f"took {took:.1f} s"
