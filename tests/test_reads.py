"""The hot reads' own path to the database (app/reads.py): read-only, one statement per TLS
status, and on PostgreSQL no pre-ping yet no 500 after the server dropped a pooled connection."""

from __future__ import annotations

import asyncio

import pytest
from pydantic_core import to_json
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

from app.domains.schemas import TlsStatus
from app.drift.models import ServedObservation
from app.kit.time import utc_now
from tests.support.api import create_domain, create_server, upload


async def _status(client, admin, customer_headers, test_ca, names=("r.test",)):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    for name in names:
        await create_domain(client, admin, name, server["id"], account_id)
    cert = await upload(client, customer, test_ca.issue([f"*.{n}" for n in names]))
    for name in names:
        r = await client.put(f"/v1/domains/{name}/bindings/mail", json={"certificate_id": cert["id"]},
                             headers=customer)
        assert r.status_code == 201, r.text
    return customer


async def test_the_read_path_refuses_writes(context, client, admin, customer_headers, test_ca):
    await _status(client, admin, customer_headers, test_ca)
    reads = context.reads()
    assert (await reads.execute(text("SELECT count(*) FROM domains"))).scalar() == 1
    with pytest.raises(DBAPIError):  # SQLite: query_only; PostgreSQL: default_transaction_read_only
        await reads.execute(text("DELETE FROM domains"))
    assert (await reads.execute(text("SELECT count(*) FROM domains"))).scalar() == 1


async def _observe(context, server_id: str, rows) -> None:
    now = utc_now()
    async with context.sessionmaker() as session:
        await session.execute(insert(ServedObservation), [
            {"server_id": server_id, "hostname": hostname, "service": service, "daemon": daemon, "port": port,
             "protocol": "imaps" if port == 993 else "https", "expected": "ab" * 32, "served": served,
             "error": None if served else "connection refused", "drifted": served != "ab" * 32, "observed_at": now}
            for hostname, service, daemon, port, served in rows])
        await session.commit()


async def test_the_answer_is_the_models_json(context, client, admin, customer_headers, test_ca):
    """The route encodes its answer itself: the bytes are what the response model would write
    for the same values (field order, formats), and the model accepts them; with observations
    of the bound mail name and of the no-SNI probes (the unbound webmail name), and none of
    another name."""
    customer = await _status(client, admin, customer_headers, test_ca)
    server_id = (await client.get("/v1/domains/r.test/tls", headers=customer)).json()["server_id"]
    await _observe(context, server_id, [("mail.r.test", "mail", "dovecot", 993, "ab" * 32),
                                        ("mail.r.test", "mail", "postfix", 465, None),
                                        ("", "webmail", "nginx", 443, "cd" * 32),
                                        ("mail.other.test", "mail", "dovecot", 993, "ab" * 32),
                                        ("webmail.r.test", "webmail", "nginx", 443, "ef" * 32)])
    r = await client.get("/v1/domains/r.test/tls", headers=customer)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert [(o["daemon"], o["port"], o["fingerprint"]) for o in body["mail"]["observed"]] == [
        ("dovecot", 993, "ab" * 32), ("postfix", 465, None)]
    assert [(o["daemon"], o["fingerprint"]) for o in body["webmail"]["observed"]] == [("nginx", "cd" * 32)]
    assert {w["code"] for w in body["warnings"]} >= {"no_agent"}
    assert TlsStatus.model_validate_json(r.content).model_dump_json().encode() == r.content
    assert to_json(r.json()) == r.content  # compact, in the model's order


async def test_the_route_keeps_the_application_wide_checks(client, admin, customer_headers, test_ca):
    """Resolved by hand (app/direct.py), the route still refuses what every route refuses, in
    the same order and with the same problems."""
    customer = await _status(client, admin, customer_headers, test_ca)
    r = await client.get("/v1/domains/r.test/tls?verbose=1", headers=customer)
    assert r.status_code == 422 and r.json()["code"] == "unknown_parameter", r.text
    assert r.headers["content-type"] == "application/problem+json"
    r = await client.get("/v1/domains/r%01.test/tls", headers=customer)
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer cpt_x_y"}):
        r = await client.get("/v1/domains/r.test/tls", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated", r.text
    _other_account, other = await customer_headers()
    r = await client.get("/v1/domains/r.test/tls", headers=other)  # another account's domain: as unknown
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    r = await client.get("/v1/domains/-bad-/tls", headers=customer)
    assert r.status_code == 404, r.text
    r = await client.get("/v1/domains/r.test/tls", headers={**customer, "X-Request-ID": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"


async def test_terminated_postgresql_connections_do_not_fail_the_next_reads(
        backend, context, client, admin, customer_headers, test_ca):
    """No pre-ping on the read path: every pooled read connection is terminated by the server
    (as a restart does), and the next reads, some of them concurrent, all answer 200 with the
    same report (one retry on a fresh connection, app/reads.py)."""
    if backend != "postgres":
        pytest.skip("PostgreSQL: SQLite connections are files, not sessions a server can drop")
    customer = await _status(client, admin, customer_headers, test_ca, names=("r.test", "s.test"))
    first = await asyncio.gather(*(client.get(f"/v1/domains/{n}/tls", headers=customer)
                                   for n in ("r.test", "s.test") * 4))  # several pooled read connections
    assert [r.status_code for r in first] == [200] * 8
    for _round in range(2):
        async with context.engine.connect() as conn:
            killed = (await conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))).scalar()
            await conn.commit()
        assert killed >= 1
        await asyncio.sleep(0.2)  # the terminations reach the clients
        again = await asyncio.gather(*(client.get(f"/v1/domains/{n}/tls", headers=customer)
                                       for n in ("r.test", "s.test") * 4))
        assert [r.status_code for r in again] == [200] * 8, [r.text for r in again]
        assert [r.json() for r in again] == [r.json() for r in first]



async def test_a_busy_sqlite_read_waits_in_a_thread_not_on_the_loop(backend, tmp_path):
    """SQLite reads run on the loop's thread with no busy timeout (app/reads.py). A file held
    exclusively by another connection (SQLite then answers SQLITE_BUSY even to WAL readers)
    makes the read wait in an executor thread instead, while the loop goes on running, and the
    read answers once the file is free."""
    if backend != "sqlite":
        pytest.skip("SQLite: the loop's own connection")
    import sqlite3
    import threading
    import time

    from app.reads import Reads

    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (v INTEGER)")
    holder.execute("INSERT INTO t VALUES (42)")
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("COMMIT")  # in exclusive locking mode the lock outlives the transaction
    reads = Reads(f"sqlite+aiosqlite:///{path}")
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    threading.Thread(target=lambda: (time.sleep(0.6), holder.close()), daemon=True).start()
    try:
        started = time.monotonic()
        value = (await reads.execute(text("SELECT v FROM t"))).scalar()
        waited = time.monotonic() - started
        assert value == 42
        assert waited >= 0.4 and ticks >= 20, (waited, ticks)  # it waited for the file; the loop did not
        assert (await reads.execute(text("SELECT v FROM t"))).scalar() == 42  # and the loop's read works again
    finally:
        ticker.cancel()
        await reads.close()
