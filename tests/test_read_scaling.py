"""Reads that do not grow with the server (issue 8): the kept mail certificate count, the
constant number of statements of a TLS status, and that a read never wakes the worker."""

from __future__ import annotations

import asyncio
import random
from contextlib import contextmanager

from sqlalchemy import event

from app.servers.repository import ServerRepository
from tests.support.api import create_domain, create_server, upload

DOMAINS = ("a.test", "b.test", "c.test")


async def _kept_and_real(context, client, admin, server_id: str) -> tuple[int, int]:
    kept = (await client.get(f"/v1/servers/{server_id}", headers=admin)).json()["per_domain_mail_certificates"]
    async with context.sessionmaker() as session:
        real = (await ServerRepository(session).mail_binding_counts([server_id])).get(server_id, 0)
    return kept, real


async def _hosting(client, admin, customer_headers, test_ca, domains=DOMAINS, certificates=2):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    for name in domains:
        await create_domain(client, admin, name, server["id"], account_id)
    sans = [f"*.{d}" for d in domains]
    certs = [await upload(client, customer, test_ca.issue(sans)) for _ in range(certificates)]
    return server, customer, [c["id"] for c in certs]


async def test_mail_certificate_count_follows_binds_rebinds_unbinds_and_domain_deletes(
        client, admin, customer_headers, test_ca, context):
    server, customer, (cert_a, cert_b) = await _hosting(client, admin, customer_headers, test_ca)

    async def put(domain, service, cert):
        r = await client.put(f"/v1/domains/{domain}/bindings/{service}", json={"certificate_id": cert}, headers=customer)
        assert r.status_code in (200, 201), r.text

    async def expect(count):
        assert await _kept_and_real(context, client, admin, server["id"]) == (count, count)

    await expect(0)
    await put("a.test", "mail", cert_a)
    await expect(1)
    await put("b.test", "mail", cert_a)  # the same certificate on a second domain
    await expect(1)
    await put("b.test", "mail", cert_b)  # rebind: A stays on a.test, B is new
    await expect(2)
    await put("a.test", "mail", cert_a)  # rebind to the same certificate: nothing changes
    await expect(2)
    await put("a.test", "mail", cert_b)  # A is bound as mail nowhere now
    await expect(1)
    await put("c.test", "webmail", cert_a)  # webmail does not count
    await expect(1)
    await put("c.test", "mail", cert_a)
    await expect(2)
    assert (await client.delete("/v1/domains/c.test", headers=admin)).status_code == 204  # cascades its bindings
    await expect(1)
    assert (await client.delete("/v1/domains/a.test/bindings/mail", headers=customer)).status_code == 204
    await expect(1)  # b.test still has B
    assert (await client.delete("/v1/domains/b.test/bindings/mail", headers=customer)).status_code == 204
    await expect(0)


async def test_concurrent_binds_and_unbinds_keep_the_count_exact(client, admin, customer_headers, test_ca, context):
    """Binds, rebinds, unbinds and a domain delete on one server at once (each request on its
    own connection on PostgreSQL): the kept count equals COUNT(DISTINCT) afterwards."""
    domains = tuple(f"d{i}.test" for i in range(8))
    server, customer, certs = await _hosting(client, admin, customer_headers, test_ca, domains, certificates=3)
    rng = random.Random(8)

    def request(domain):
        if rng.random() < 0.25:
            return client.delete(f"/v1/domains/{domain}/bindings/mail", headers=customer)
        return client.put(f"/v1/domains/{domain}/bindings/mail", json={"certificate_id": rng.choice(certs)},
                          headers=customer)

    for round_ in range(4):
        calls = [request(rng.choice(domains)) for _ in range(24)]
        if round_ == 3:
            calls.append(client.delete(f"/v1/domains/{domains[0]}", headers=admin))
        responses = await asyncio.gather(*calls)
        assert all(r.status_code < 500 for r in responses), [r.text for r in responses if r.status_code >= 500]
        kept, real = await _kept_and_real(context, client, admin, server["id"])
        assert kept == real, round_


@contextmanager
def wake_calls(context, monkeypatch):
    calls = []
    monkeypatch.setattr(context, "notify_worker", lambda: calls.append(1))
    yield calls


async def test_a_read_never_wakes_the_worker_a_change_does(client, admin, customer_headers, test_ca, context,
                                                           monkeypatch):
    server, customer, (cert, _other) = await _hosting(client, admin, customer_headers, test_ca)
    with wake_calls(context, monkeypatch) as calls:
        for url in ("/v1/domains/a.test/tls", "/v1/domains/a.test/bindings", "/v1/domains", "/v1/certificates",
                    f"/v1/servers/{server['id']}/deployments"):
            assert (await client.get(url, headers=customer if "servers" not in url else admin)).status_code == 200
        assert (await client.get("/v1/servers", headers=admin)).status_code == 200
        assert calls == []
        r = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert}, headers=customer)
        assert r.status_code == 201 and calls == [1]
        # An unchanged bind records no deployment: nothing for the worker.
        r = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert}, headers=customer)
        assert r.status_code == 200 and calls == [1]
        # A refused change rolls back: nothing for the worker either.
        r = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": "nope"}, headers=customer)
        assert r.status_code == 404 and calls == [1]


async def test_an_order_wakes_the_worker(client, admin, customer_headers, context, monkeypatch):
    server = await create_server(client, admin, agent_url="https://mx1.hosting.test:8443/")
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "o.test", server["id"], account_id)
    with wake_calls(context, monkeypatch) as calls:
        r = await client.post("/v1/certificate-orders", json={"domain": "o.test", "challenge": "http-01"},
                              headers=customer)
        assert r.status_code == 202, r.text
        assert calls == [1]
        assert (await client.get(r.headers["location"], headers=customer)).status_code == 200
        assert calls == [1]


@contextmanager
def statements(context):
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    engines = (context.engine.sync_engine, context.reads().engine)  # the session's, the reads' (app/reads.py)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


async def test_tls_status_runs_the_same_statements_at_5_and_200_domains(client, admin, customer_headers, test_ca,
                                                                        context):
    names = [f"q{i:03d}.test" for i in range(200)]
    server, customer, (cert, _other) = await _hosting(client, admin, customer_headers, test_ca, names[:5], 2)
    account_id = (await client.get("/v1/domains/q000.test", headers=customer)).json()["account_id"]

    async def bind_all(domains):
        for name in domains:
            for service in ("webmail", "mail"):
                r = await client.put(f"/v1/domains/{name}/bindings/{service}", json={"certificate_id": cert},
                                     headers=customer)
                assert r.status_code == 201, r.text

    async def measure() -> dict[str, list[str]]:
        out = {}
        for path in ("/tls", "/bindings"):
            await client.get(f"/v1/domains/q000.test{path}", headers=customer)  # warm the caches
            with statements(context) as seen:
                r = await client.get(f"/v1/domains/q000.test{path}", headers=customer)
            assert r.status_code == 200, r.text
            out[path] = seen
        return out

    await bind_all(names[:5])
    small = await measure()
    # 195 more domains, each bound to the certificate, written directly (the API is not what is measured)
    from sqlalchemy import insert

    from app.db import new_id
    from app.domains.models import Binding, Domain
    from app.kit.time import utc_now

    now = utc_now()
    async with context.sessionmaker() as session:
        rows = [{"id": new_id(), "name": n, "server_id": server["id"], "account_id": account_id,
                 "created_at": now, "updated_at": now} for n in names[5:]]
        await session.execute(insert(Domain), rows)
        await session.execute(insert(Binding), [
            {"id": new_id(), "domain_id": row["id"], "service": service, "certificate_id": cert,
             "created_at": now, "updated_at": now} for row in rows for service in ("webmail", "mail")])
        await session.commit()
    big = await measure()
    for path, seen in big.items():
        assert len(small[path]) == len(seen), (path, small[path], seen)
        selects = [s for s in seen if s.lstrip().upper().startswith(("SELECT", "WITH"))]
        assert len(selects) <= 3, seen  # the token, the domain with its server, the certificates
        assert not any("certificate_names" in s or "applied_names" in s or "count(" in s.lower() for s in seen), seen


async def test_a_warm_tls_status_is_one_select_without_a_transaction(client, admin, customer_headers, test_ca,
                                                                     context):
    """With the caller's token cached (app.accounts.token_cache), the TLS status is one statement,
    the domain with its observations, outside any transaction (app/reads.py): no token lookup,
    no COMMIT; with the cache off the token is looked up again and the report is the same."""
    _server, customer, (cert,) = await _hosting(client, admin, customer_headers, test_ca, ("w.test",), 1)
    r = await client.put("/v1/domains/w.test/bindings/mail", json={"certificate_id": cert}, headers=customer)
    assert r.status_code == 201, r.text
    commits = []

    def on_commit(_conn):
        commits.append(1)

    first = await client.get("/v1/domains/w.test/tls", headers=customer)  # caches the token
    engines = (context.engine.sync_engine, context.reads().engine)
    for engine in engines:
        event.listen(engine, "commit", on_commit)
    try:
        with statements(context) as seen:
            warm = await client.get("/v1/domains/w.test/tls", headers=customer)
    finally:
        for engine in engines:
            event.remove(engine, "commit", on_commit)
    assert warm.status_code == 200 and warm.json() == first.json()
    assert len(seen) == 1 and not any("api_tokens" in s for s in seen), seen
    assert commits == []
    context.token_cache().clear()
    with statements(context) as seen:
        cold = await client.get("/v1/domains/w.test/tls", headers=customer)
    assert cold.json() == first.json() and any("api_tokens" in s for s in seen), seen


async def test_more_concurrent_cold_tls_reads_than_pooled_connections(client, admin, customer_headers, test_ca,
                                                                      context):
    """More concurrent first requests than the session's pool has connections all answer: the
    TLS status and its token lookup take none of them (app/reads.py lends each statement a
    connection of its own engine for that statement only; when a request held one and its token
    lookup took a second, 16 of them could each hold one and wait until the pool timed out)."""
    _server, customer, _certs = await _hosting(client, admin, customer_headers, test_ca, ("p.test",), 1)
    pool = context.engine.sync_engine.pool
    many = pool.size() + getattr(pool, "_max_overflow", 0) + 5
    context.token_cache().clear()
    answers = await asyncio.wait_for(
        asyncio.gather(*(client.get("/v1/domains/p.test/tls", headers=customer) for _ in range(many))), 60)
    assert [r.status_code for r in answers] == [200] * many
