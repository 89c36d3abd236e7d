"""Idempotency-Key on the creating POSTs (draft-ietf-httpapi-idempotency-key-header).

Concurrent requests run at once against the real database (ASGI clients gathered; on
PostgreSQL each on its own pooled connection). The stored responses are read back from the
table itself to show that no secret is kept in the clear.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select, text, update

from app.certificates.models import Certificate
from app.idempotency.models import IdempotencyKey
from app.kit.time import utc_now
from app.servers.models import Server
from tests.support.api import assert_problem, create_server, upload_body


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def _count(context, model, *where) -> int:
    async with context.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


SELF_SIGNED = {"names": ["a.test"], "days": 30}


async def test_a_retry_replays_the_first_response_and_creates_nothing(client, admin, context):
    headers = {**admin, **key()}
    body = {"name": "mx1", "hostname": "mx1.hosting.test", "software": "postfix-dovecot"}
    first = await client.post("/v1/servers", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert first.headers["Location"] == f"/v1/servers/{first.json()['id']}"
    # The same data, other key order and spacing: the same request.
    again = await client.post("/v1/servers", content='{"software":"postfix-dovecot", "hostname":"mx1.hosting.test",'
                              '"name":"mx1"}', headers={**headers, "Content-Type": "application/json"})
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await _count(context, Server) == 1
    # A new key is a new request: this one is refused as a duplicate name, as before.
    r = await client.post("/v1/servers", json=body, headers={**admin, **key()})
    assert_problem(r, 409, "server_exists")


async def test_the_same_key_with_another_body_is_refused(client, admin, context):
    headers = {**admin, **key()}
    r = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers=headers)
    assert r.status_code == 201
    other = await client.post("/v1/certificates/self-signed", json={**SELF_SIGNED, "days": 31}, headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    elsewhere = await client.post("/v1/accounts", json={"name": "x"}, headers=headers)  # another route
    assert_problem(elsewhere, 422, "idempotency_key_reused")
    assert await _count(context, Certificate) == 1


async def test_concurrent_identical_posts_create_one_row(client, admin, customer_headers, context, test_ca):
    _account, customer = await customer_headers()
    for _round in range(3):
        # a new certificate each round: an identical upload under a new key is answered by the
        # deduplication (200 with the existing certificate), not by the key
        body = upload_body(test_ca.issue([f"*.race{_round}.test"]))
        headers = {**customer, **key()}
        before = await _count(context, Certificate)
        results = await asyncio.gather(*(client.post("/v1/certificates", json=body, headers=headers) for _ in range(6)))
        statuses = Counter(r.status_code for r in results)
        assert set(statuses) <= {201, 409} and statuses[201] >= 1, [r.text for r in results]
        for r in results:
            if r.status_code == 409:
                assert_problem(r, 409, "idempotency_key_in_flight")
                assert r.headers["Retry-After"] == "1"
        created = {r.content for r in results if r.status_code == 201}
        assert len(created) == 1  # every 201 is the one response
        assert await _count(context, Certificate) == before + 1
        replay = await client.post("/v1/certificates", json=body, headers=headers)
        assert replay.status_code == 201 and replay.content in created
        assert replay.headers["Location"].endswith(replay.json()["id"])


async def test_keys_are_scoped_to_the_caller(client, admin, customer_headers, context):
    shared = key()
    results = {}
    for who in ("one", "two"):
        _account, customer = await customer_headers(who)
        r = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers={**customer, **shared})
        assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
        results[who] = r.json()
    assert results["one"]["id"] != results["two"]["id"]
    assert results["one"]["account_id"] != results["two"]["account_id"]
    # Two admin tokens are two callers too.
    other_admin = (await client.post("/v1/tokens", json={"role": "admin"}, headers=admin)).json()["token"]
    mine = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers={**admin, **shared})
    theirs = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED,
                               headers={"Authorization": f"Bearer {other_admin}", **shared})
    assert mine.json()["id"] != theirs.json()["id"]
    assert await _count(context, Certificate) == 4


async def test_no_secret_is_stored_in_the_clear(client, admin, context):
    headers = {**admin, **key()}
    first = await client.post("/v1/tokens", json={"role": "admin", "description": "panel"}, headers=headers)
    assert first.status_code == 201
    assert first.headers["Location"] == f"/v1/tokens/{first.json()['id']}"
    secret = first.json()["token"]
    async with context.sessionmaker() as session:
        rows = (await session.execute(text("SELECT * FROM idempotency_keys"))).all()
    assert len(rows) == 1
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in rows[0])
    assert secret.encode() not in stored and secret.split("_")[-1].encode() not in stored
    assert b'"token"' not in stored
    replay = await client.post("/v1/tokens", json={"role": "admin", "description": "panel"}, headers=headers)
    assert replay.json()["token"] == secret  # opened with the master key for the same caller


async def test_a_failed_request_releases_its_key(client, admin, context):
    headers = {**admin, **key()}
    bad = await client.post("/v1/domains", json={"name": "com", "server_id": "x", "account_id": "y"}, headers=headers)
    assert_problem(bad, 422, "invalid_name")
    assert await _count(context, IdempotencyKey) == 0
    r = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers=headers)
    assert r.status_code == 201


async def test_in_flight_and_a_lease_that_ran_out(client, admin, context):
    headers = {**admin, **key()}
    r = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers=headers)
    assert r.status_code == 201
    # As if the first request were still running: nothing stored, a lease ahead.
    async with context.sessionmaker() as session:
        await session.execute(update(IdempotencyKey).values(status=None, owner="elsewhere",
                                                            lease_until=utc_now() + timedelta(seconds=30)))
        await session.commit()
    busy = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers=headers)
    assert_problem(busy, 409, "idempotency_key_in_flight")
    # Its process died: once the lease ran out, a retry runs and its response is the one kept.
    async with context.sessionmaker() as session:
        await session.execute(update(IdempotencyKey).values(lease_until=utc_now() - timedelta(seconds=1)))
        await session.commit()
    retried = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers=headers)
    assert retried.status_code == 201 and retried.json()["id"] != r.json()["id"]
    replay = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers=headers)
    assert replay.content == retried.content


async def test_keys_expire_after_a_day(client, admin, context):
    headers = {**admin, **key()}
    r = await client.post("/v1/certificates/self-signed", json=SELF_SIGNED, headers=headers)
    async with context.sessionmaker() as session:
        row = await session.scalar(select(IdempotencyKey))
        assert timedelta(hours=23, minutes=59) < row.expires_at - row.created_at <= timedelta(hours=24)
        await session.execute(update(IdempotencyKey).values(expires_at=utc_now() - timedelta(seconds=1)))
        await session.commit()
    other = await client.post("/v1/certificates/self-signed", json={**SELF_SIGNED, "days": 31}, headers=headers)
    assert other.status_code == 201 and other.json()["id"] != r.json()["id"]


async def test_multipart_import_replays(client, admin, context, test_ca):
    issued = test_ca.issue(["files.test"])
    headers = {**admin, **key()}

    def files(key_pem=issued.key_pem):
        return {"certificate": ("cert.pem", issued.cert_pem), "private_key": ("key.pem", key_pem)}

    first = await client.post("/v1/certificates/import", files=files(), headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/certificates/import", files=files(), headers=headers)
    assert again.content == first.content and again.headers["Location"] == first.headers["Location"]
    other = test_ca.issue(["files.test"])
    changed = await client.post("/v1/certificates/import",
                                files={"certificate": ("cert.pem", other.cert_pem), "private_key": ("key.pem", other.key_pem)},
                                headers=headers)
    assert_problem(changed, 422, "idempotency_key_reused")
    assert await _count(context, Certificate) == 1


async def test_a_customer_order_and_domain_creation_take_keys(client, admin, customer_headers, context):
    server = await create_server(client, admin)
    account_id, _customer = await customer_headers()
    headers = {**admin, **key()}
    body = {"name": "d.test", "server_id": server["id"], "account_id": account_id}
    first = await client.post("/v1/domains", json=body, headers=headers)
    again = await client.post("/v1/domains", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["Location"] == "/v1/domains/d.test"


async def test_a_replay_after_the_master_key_changed(client, admin, context, settings, tmp_path):
    """Stored responses are sealed with the master key. After the key file was replaced (a second
    controller built on the same database with another key), a retry cannot be replayed: it gets
    409 idempotency_response_unreadable with the first request's Location, and runs nothing."""
    import httpx

    from app.context import AppContext
    from app.kit.crypto import load_master_key
    from app.main import create_app

    headers = {**admin, **key()}
    body = {"name": "mx1", "hostname": "mx1.hosting.test", "software": "postfix-dovecot"}
    first = await client.post("/v1/servers", json=body, headers=headers)
    assert first.status_code == 201, first.text

    new_key = tmp_path / "replaced-master.key"
    assert load_master_key(new_key, create=True).id != context.master_key.id
    # A new Settings (not model_copy, which would keep the cached resolved paths of the old one).
    other = AppContext.build(type(settings)(**{**settings.model_dump(exclude_unset=True), "master_key_file": new_key}))
    assert other.master_key.id != context.master_key.id
    try:
        app = create_app(context=other, run_worker=False)
        app.state.ctx = other
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://certpost.test") as c:
            for _ in range(2):  # the record stays: every retry gets the same answer
                problem = assert_problem(await c.post("/v1/servers", json=body, headers=headers), 409,
                                         "idempotency_response_unreadable")
                assert problem["location"] == first.headers["Location"]
                assert first.headers["Location"] in problem["detail"]
                assert "Idempotent-Replayed" not in problem
            assert await _count(context, Server) == 1
            # Another body with that key is still another request; a new key creates.
            assert_problem(await c.post("/v1/servers", json={**body, "name": "mx2"}, headers=headers), 422,
                           "idempotency_key_reused")
            fresh = await c.post("/v1/servers", json={**body, "name": "mx2", "hostname": "mx2.hosting.test"},
                                 headers={**admin, **key()})
            assert fresh.status_code == 201, fresh.text
    finally:
        await other.close()
    # The controller with the original key still replays it.
    again = await client.post("/v1/servers", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
