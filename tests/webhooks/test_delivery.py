"""Webhook deliveries end to end: the real worker POSTs to real HTTP receivers on loopback, and
the test checks each request with its own Standard Webhooks verifier (tests/webhooks/verify.py)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.accounts.caller import Caller
from app.events import EventKind, record
from app.events.models import Event
from app.scheduler.worker import Worker
from tests.support.api import assert_problem
from tests.support.worker import work_until
from tests.webhooks.verify import Invalid, verify

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
DOCUMENTED_VERIFIER = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL).group(1)
ADMIN = Caller(token_id="tok-test", role="admin", account_id=None)


async def emit(ctx, n=1, *, kind=EventKind.TOKEN_CREATED, account_id=None) -> list[int]:
    """Record ``n`` events the way every feature does (app.events.record in its transaction)."""
    async with ctx.sessionmaker() as session:
        await session.execute(select(1))
        for i in range(n):
            record(session, kind, ADMIN, account_id=account_id, subjects={"token": f"tok-{i}"},
                   data={"role": "customer", "n": i})
        await session.commit()
    async with ctx.sessionmaker() as session:
        return list(await session.scalars(select(Event.id).order_by(Event.id.desc()).limit(n)))[::-1]


async def create(client, headers, url, kinds=("token.created",), **extra) -> dict:
    response = await client.post("/v1/webhooks", json={"url": url, "kinds": list(kinds), **extra}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/webhooks/{response.json()['id']}"
    return response.json()


async def deliveries(client, headers, webhook_id) -> list[dict]:
    response = await client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def settled(client, headers, webhook_id, count, statuses=("delivered",)):
    async def check():
        rows = await deliveries(client, headers, webhook_id)
        return rows if len(rows) == count and all(r["status"] in statuses for r in rows) else None
    return check


async def test_a_delivery_is_signed_as_the_specification_says(api, admin, receivers, customer_headers):
    client, ctx = api
    receiver = receivers()
    account_id, _ = await customer_headers()
    hook = await create(client, admin, receiver.url, account_id=account_id)
    secret = hook["secret"]
    await emit(ctx, kind=EventKind.TOKEN_CREATED, account_id=None)  # another scope: not delivered
    [event_id] = await emit(ctx, kind=EventKind.TOKEN_CREATED, account_id=account_id)
    await emit(ctx, kind=EventKind.TOKEN_REVOKED, account_id=account_id)  # another kind: not delivered
    [row] = await work_until(ctx, settled(client, admin, hook["id"], 1), worker=Worker(ctx, owner="w1"))

    [request] = receiver.requests
    verify(secret, request.headers, request.body)
    assert request.headers["webhook-id"] == row["id"] and request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert set(body) == {"type", "timestamp", "data"} and body["type"] == "token.created"
    assert body["timestamp"].endswith("Z")
    assert body["data"]["event_id"] == event_id and body["data"]["account_id"] == account_id
    assert body["data"]["subjects"] == {"token": "tok-0"} and body["data"]["role"] == "customer"
    # A changed body, id or timestamp does not verify: the verifier can fail.
    for headers, sent in ((request.headers, request.body + b" "),
                          ({**request.headers, "webhook-id": "other"}, request.body),
                          ({**request.headers, "webhook-timestamp": str(int(request.headers["webhook-timestamp"]) + 1)},
                           request.body)):
        try:
            verify(secret, headers, sent)
        except Invalid:
            continue
        raise AssertionError("a tampered request verified")
    # The verification snippet docs/webhooks.md gives to panels accepts it too, and refuses a change.
    documented = {}
    exec(DOCUMENTED_VERIFIER, documented)  # noqa: S102 - our own documentation, run as typed
    assert documented["verify"](secret, request.headers, request.body) is True
    assert documented["verify"](secret, request.headers, request.body + b"x") is False
    assert row["event_id"] == event_id and row["attempts"] == 1 and row["last_status_code"] == 200
    [attempt] = row["attempt_log"]
    assert attempt["attempt"] == 1 and attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["duration_ms"] >= 0 and attempt["redelivery"] is False


async def test_a_failing_and_slow_receiver_is_retried_with_backoff_until_it_comes_back(api, admin, receivers):
    client, ctx = api  # schedule 0.2 s between attempts, 1 s per attempt
    receiver = receivers()
    receiver.plan = [500, ("sleep", 2.5, 200), 503]
    hook = await create(client, admin, receiver.url)
    await emit(ctx)
    [row] = await work_until(ctx, settled(client, admin, hook["id"], 1), worker=Worker(ctx, owner="w1"), timeout=60)

    assert row["attempts"] == 4 and row["status"] == "delivered" and row["delivered_at"]
    log = row["attempt_log"]
    assert [a["attempt"] for a in log] == [1, 2, 3, 4]
    assert [a["status_code"] for a in log] == [500, None, 503, 200]
    assert log[0]["error"] == "HTTP 500" and log[1]["error"].startswith("timed out") and log[3]["error"] is None
    assert log[1]["duration_ms"] >= 900  # bounded by the 1 s timeout, not the receiver's 2.5 s
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {row["id"]} and len(receiver.requests) == 4  # one message, the same id on every retry
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:])]
    assert all(gap >= 0.15 for gap in gaps), gaps  # the schedule's 0.2 s (less 10 % jitter) at least
    hook_now = (await client.get(f"/v1/webhooks/{hook['id']}", headers=admin)).json()
    assert hook_now["enabled"] and hook_now["consecutive_failures"] == 0 and hook_now["failing_since"] is None


async def test_a_webhook_that_keeps_failing_is_disabled_with_an_event(make_api, admin, receivers):
    client, ctx = await make_api(webhook_retry_schedule="0.1,0.1,0.1,0.1,0.1,0.1", webhook_disable_after_seconds=0.3)
    receiver = receivers()
    receiver.default = 500
    hook = await create(client, admin, receiver.url + "?key=s3cret")
    await emit(ctx)

    async def disabled():
        body = (await client.get(f"/v1/webhooks/{hook['id']}", headers=admin)).json()
        return body if not body["enabled"] else None

    body = await work_until(ctx, disabled, worker=Worker(ctx, owner="w1"))
    assert body["disabled_reason"] == "failing" and body["consecutive_failures"] >= 2
    async with ctx.sessionmaker() as session:
        [event] = (await session.scalars(select(Event).where(Event.kind == "webhook.disabled"))).all()
    assert event.subjects == {"webhook": hook["id"]} and event.data["reason"] == "failing"
    assert event.data["url"] == receiver.url  # without the query, where receivers keep their keys
    assert event.actor_type == "worker"
    sent = len(receiver.requests)
    await emit(ctx)
    worker = Worker(ctx, owner="w2")
    for _ in range(5):
        await worker.round()
        await worker.drain()
        await asyncio.sleep(0.1)
    assert len(receiver.requests) == sent  # nothing goes to a disabled webhook
    assert_problem(await client.post(f"/v1/webhooks/{hook['id']}/deliveries/{(await deliveries(client, admin, hook['id']))[0]['id']}/redeliver",
                                     headers=admin), 409, "webhook_disabled")

    # Enabled again, with the receiver back: the waiting deliveries go out.
    receiver.default = 200
    response = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True}, headers=admin)
    assert response.status_code == 200 and response.json()["enabled"] and response.json()["disabled_reason"] is None
    rows = await work_until(ctx, settled(client, admin, hook["id"], 2, ("delivered", "failed")), worker=worker)
    assert any(r["status"] == "delivered" for r in rows)


async def test_410_gone_disables_at_once(api, admin, receivers):
    client, ctx = api
    receiver = receivers()
    receiver.default = 410
    hook = await create(client, admin, receiver.url)
    await emit(ctx)

    async def gone():
        body = (await client.get(f"/v1/webhooks/{hook['id']}", headers=admin)).json()
        return body if body["disabled_reason"] == "gone" else None

    await work_until(ctx, gone, worker=Worker(ctx, owner="w1"))
    assert len(receiver.requests) == 1


async def test_redelivery_sends_the_same_message_again(api, admin, receivers):
    client, ctx = api
    receiver = receivers()
    hook = await create(client, admin, receiver.url)
    await emit(ctx)
    worker = Worker(ctx, owner="w1")
    [row] = await work_until(ctx, settled(client, admin, hook["id"], 1), worker=worker)
    response = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/{row['id']}/redeliver", headers=admin)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"

    async def again():
        [r] = await deliveries(client, admin, hook["id"])
        return r if r["attempts"] == 2 and r["status"] == "delivered" else None

    row = await work_until(ctx, again, worker=worker)
    assert [a["redelivery"] for a in row["attempt_log"]] == [False, True]
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == row["id"] and first.body == second.body
    verify(hook["secret"], second.headers, second.body)
    assert_problem(await client.post(f"/v1/webhooks/{hook['id']}/deliveries/nope/redeliver", headers=admin),
                   404, "not_found")


async def test_two_workers_deliver_each_event_once(api, admin, receivers, webhook_context):
    client, ctx = api
    receiver = receivers()
    hooks = [await create(client, admin, receiver.url) for _ in range(3)]
    event_ids = await emit(ctx, 15)
    # Two workers as two processes would be: each its own engine and connection pool.
    first, second = Worker(ctx, owner="worker-a"), Worker(webhook_context(), owner="worker-b")

    async def spin(worker):
        for _ in range(40):
            await worker.round()
            await asyncio.sleep(0.02)
        await worker.drain()

    await asyncio.gather(spin(first), spin(second))
    for hook in hooks:
        await work_until(ctx, settled(client, admin, hook["id"], 15), worker=first)
    seen = [(json.loads(r.body)["data"]["event_id"], r.headers["webhook-id"]) for r in receiver.requests]
    assert len(seen) == len(set(seen)) == 45
    assert sorted({e for e, _ in seen}) == event_ids


async def test_a_slow_receiver_does_not_hold_back_another_webhook(make_api, admin, receivers):
    client, ctx = await make_api(webhook_timeout_seconds=60)
    slow, fast = receivers(), receivers()
    gate = threading.Event()
    slow.plan = [("gate", gate, 200)]
    slow_hook = await create(client, admin, slow.url)
    fast_hook = await create(client, admin, fast.url)
    await emit(ctx)
    worker = Worker(ctx, owner="w1")
    try:
        for _ in range(200):
            await worker.round()
            await asyncio.sleep(0.05)
            if fast.requests and slow.requests:  # the slow one's request may start after the fast one's
                break
        assert fast.requests and len(slow.requests) == 1  # the slow one is still holding its request
        [row] = await deliveries(client, admin, slow_hook["id"])
        assert row["attempts"] == 0
    finally:
        gate.set()
    await worker.drain()
    assert (await deliveries(client, admin, fast_hook["id"]))[0]["status"] == "delivered"


async def test_a_panel_hears_its_customers_binding_without_polling(api, admin, receivers, customer_headers, test_ca):
    """The whole path: a customer binds a certificate through the API (the service records
    binding.set in that transaction), the worker delivers it to the webhook following that account."""
    from tests.support.api import create_domain, create_server, upload

    client, ctx = api
    receiver = receivers()
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    other_id, other = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    await create_domain(client, admin, "b.test", server["id"], other_id)
    hook = await create(client, admin, receiver.url, kinds=("binding.set",), account_id=account_id)
    for domain, headers in (("b.test", other), ("a.test", customer)):
        cert = await upload(client, headers, test_ca.issue([f"webmail.{domain}"]))
        response = await client.put(f"/v1/domains/{domain}/bindings/webmail", json={"certificate_id": cert["id"]},
                                    headers=headers)
        assert response.status_code in (200, 201), response.text
    await work_until(ctx, settled(client, admin, hook["id"], 1), worker=Worker(ctx, owner="w1"))
    [request] = receiver.requests
    verify(hook["secret"], request.headers, request.body)
    body = json.loads(request.body)
    assert body["type"] == "binding.set" and body["data"]["account_id"] == account_id
    assert body["data"]["subjects"]["certificate"] == cert["id"] and body["data"]["actor"]["role"] == "customer"


async def test_a_customers_webhook_gets_its_own_accounts_events_only(make_api, customer_headers):
    # 192.0.2.0/24 (documentation, never routed) is allowed by the operator here, so the customer's
    # webhook passes the guard; its attempts fail, which does not matter: what is queued is checked.
    client, ctx = await make_api(outbound_allow="192.0.2.0/24", webhook_timeout_seconds=0.5)
    account_id, customer = await customer_headers()
    other_id, _ = await customer_headers()
    response = await client.post("/v1/webhooks", json={"url": "https://192.0.2.10/hooks", "kinds": ["token.created"]},
                                 headers=customer)
    assert response.status_code == 201, response.text
    hook = response.json()
    await emit(ctx, account_id=other_id)
    await emit(ctx, account_id=None)
    [own] = await emit(ctx, account_id=account_id)
    rows = await work_until(ctx, settled(client, customer, hook["id"], 1, ("retrying", "failed", "delivered")),
                            worker=Worker(ctx, owner="w1"))
    assert [r["event_id"] for r in rows] == [own]
    assert rows[0]["attempt_log"][0]["status_code"] is None  # nothing answers there


async def test_a_webhook_disabled_while_its_batch_is_being_sent_sends_no_more(make_api, admin, receivers):
    """``enabled: false`` stops deliveries: the ones of a batch the worker already picked up and
    has not started must wait too, not go out one after another for minutes."""
    client, ctx = await make_api(webhook_concurrency=1)
    receiver = receivers()
    gate = threading.Event()
    receiver.plan = [("gate", gate, 200)]
    hook = await create(client, admin, receiver.url)
    await emit(ctx, 5)
    worker = Worker(ctx, owner="w1")
    await worker.round()  # fans out and starts sending; the first request waits at the gate
    for _ in range(600):
        if receiver.requests:
            break
        await asyncio.sleep(0.05)
    response = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=admin)
    assert response.status_code == 200 and not response.json()["enabled"]
    gate.set()
    await worker.drain()
    assert len(receiver.requests) == 1
    rows = await deliveries(client, admin, hook["id"])
    assert sorted(r["status"] for r in rows) == ["delivered"] + ["pending"] * 4


async def test_webhooks_take_turns_while_events_keep_coming(api, admin, receivers):
    """Claimed by creation order, the oldest webhook (due again after every run while events
    keep coming) took the only slot every time; the one furthest behind goes first now."""
    from app.kit.time import utc_now
    from app.webhooks.jobs import claim_webhooks, run_webhook

    client, ctx = api
    receiver = receivers()
    first, second = [await create(client, admin, receiver.url) for _ in range(2)]
    lease = timedelta(seconds=30)
    turns = []
    for _ in range(4):
        await emit(ctx)
        async with ctx.sessionmaker() as session:
            [claimed] = await claim_webhooks(session, "w1", utc_now(), lease, 1)
            await session.commit()
        turns.append(claimed)
        await run_webhook(ctx, claimed, "w1")
    assert turns == [first["id"], second["id"], first["id"], second["id"]], turns
