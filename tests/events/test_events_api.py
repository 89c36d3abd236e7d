"""GET /v1/events: every change made through the API is an event with its author, in its own
transaction; a customer sees its own account's events and nothing else (app/events)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from sqlalchemy import event, func, select, text

from app.accounts.tokens import parse_token
from app.events.models import Event
from app.kit.time import utc_now
from tests.support.api import (
    assert_problem,
    create_domain,
    create_server,
    list_all,
    upload,
    upload_body,
)

KEY_MARKERS = ("-----BEGIN", "PRIVATE KEY", "ENCRYPTED")


def token_id(headers: dict) -> str:
    return parse_token(headers["Authorization"].removeprefix("Bearer "))[0]


def only(events: list[dict], kind: str) -> dict:
    found = [e for e in events if e["kind"] == kind]
    assert len(found) == 1, (kind, [e["kind"] for e in events])
    return found[0]


def assert_no_key_material(events: list[dict], *secrets: str) -> None:
    blob = json.dumps(events)
    assert not any(marker in blob for marker in KEY_MARKERS), blob
    for secret in secrets:
        body = "".join(line for line in secret.splitlines() if line and not line.startswith("-----"))
        assert body[:40] not in blob


async def test_every_change_through_the_api_is_an_event_with_its_author(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin)
    account_id, _ = await customer_headers("shop")
    created = await client.post("/v1/tokens", json={"role": "customer", "account_id": account_id,
                                                    "description": "panel"}, headers=admin)
    customer = {"Authorization": f"Bearer {created.json()['token']}"}
    await create_domain(client, admin, "shop.test", server["id"], account_id)

    first, second = test_ca.issue(["*.shop.test"]), test_ca.issue(["*.shop.test"])
    cert = await upload(client, customer, first)
    r = await client.put(f"/v1/certificates/{cert['id']}", json=upload_body(second), headers=customer)
    assert r.status_code == 200, r.text
    for service in ("mail", "webmail"):
        r = await client.put(f"/v1/domains/shop.test/bindings/{service}", json={"certificate_id": cert["id"]},
                             headers=customer)
        assert r.status_code == 201, r.text
    # The same bind again changes nothing, and so records nothing.
    r = await client.put("/v1/domains/shop.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
    assert r.status_code == 200
    for service in ("mail", "webmail"):
        assert (await client.delete(f"/v1/domains/shop.test/bindings/{service}", headers=customer)).status_code == 204
    assert (await client.delete(f"/v1/certificates/{cert['id']}", headers=customer)).status_code == 204

    platform = await upload(client, admin, test_ca.issue([server["hostname"]]))
    for method, path, body in (("PUT", "mail-certificate", {"certificate_id": platform["id"]}),
                               ("PUT", "webmail-certificate", {"certificate_id": platform["id"]}),
                               ("DELETE", "webmail-certificate", None)):
        r = await client.request(method, f"/v1/servers/{server['id']}/{path}", json=body, headers=admin)
        assert r.status_code == 200, r.text
    assert (await client.delete(f"/v1/tokens/{created.json()['id']}", headers=admin)).status_code == 204

    events = await list_all(client, "/v1/events", admin)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    as_admin = {"type": "token", "id": token_id(admin), "role": "admin"}
    as_customer = {"type": "token", "id": created.json()["id"], "role": "customer"}

    made = only([e for e in events if e["subjects"] == {"token": created.json()["id"]}], "token.created")
    operator = only(events[:1], "token.created")  # the fixture's admin token, made by the `certpost` command
    assert operator["actor"] == {"type": "operator", "id": "cli", "role": None}
    assert made["actor"] == as_admin and made["account_id"] == account_id
    assert made["subjects"] == {"token": created.json()["id"]} and made["data"]["role"] == "customer"
    uploaded = [e for e in events if e["kind"] == "certificate.uploaded" and e["subjects"]["certificate"] == cert["id"]]
    assert len(uploaded) == 1 and uploaded[0]["actor"] == as_customer and uploaded[0]["account_id"] == account_id
    assert uploaded[0]["data"]["fingerprint_sha256"] == first.fingerprint
    assert uploaded[0]["data"]["names"] == ["*.shop.test"] and uploaded[0]["data"]["source"] == "upload"
    replaced = only(events, "certificate.replaced")
    assert replaced["actor"] == as_customer and replaced["data"]["fingerprint_sha256"] == second.fingerprint
    assert replaced["data"]["previous_fingerprint_sha256"] == first.fingerprint and replaced["data"]["revision"] == 2

    bound = [e for e in events if e["kind"] == "binding.set"]
    assert [e["data"]["service"] for e in bound] == ["mail", "webmail"]
    assert all(e["actor"] == as_customer and e["account_id"] == account_id for e in bound)
    assert bound[0]["subjects"] == {"domain": "shop.test", "server": server["id"], "certificate": cert["id"]}
    assert bound[0]["data"]["host_name"] == "mail.shop.test"
    assert bound[0]["data"]["fingerprint_sha256"] == second.fingerprint
    removed = [e for e in events if e["kind"] == "binding.removed"]
    assert [e["data"]["host_name"] for e in removed] == ["mail.shop.test", "webmail.shop.test"]
    assert removed[0]["subjects"]["certificate"] == cert["id"] and removed[0]["data"]["reason"] == "unbound"
    deleted = only(events, "certificate.deleted")
    assert deleted["actor"] == as_customer and deleted["data"]["fingerprint_sha256"] == second.fingerprint

    mail = only(events, "server.mail_certificate_changed")
    assert mail["actor"] == as_admin and mail["account_id"] is None
    assert mail["subjects"]["server"] == server["id"] and mail["subjects"]["certificate"] == platform["id"]
    assert mail["data"]["previous_certificate_id"] == server["mail_certificate_id"]
    webmail = [e for e in events if e["kind"] == "server.webmail_certificate_changed"]
    assert [e["data"]["certificate_id"] for e in webmail] == [platform["id"], None]
    assert webmail[1]["data"]["previous_certificate_id"] == platform["id"]
    revoked = only(events, "token.revoked")
    assert revoked["actor"] == as_admin and revoked["subjects"] == {"token": created.json()["id"]}
    # The order of the log is the order of the changes.
    order = [e["kind"] for e in events if e["kind"] != "certificate.uploaded" and e["actor"]["type"] == "token"]
    assert order.index("token.created") < order.index("certificate.replaced") < order.index("binding.set")
    assert order.index("binding.removed") < order.index("certificate.deleted") < order.index("token.revoked")
    assert_no_key_material(events, first.key_pem, second.key_pem)


async def test_a_customer_sees_its_own_events_only(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin)
    account_a, a = await customer_headers("A")
    account_b, b = await customer_headers("B")
    await create_domain(client, admin, "a.test", server["id"], account_a)
    cert_a = await upload(client, a, test_ca.issue(["*.a.test"]))
    assert (await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert_a["id"]},
                             headers=a)).status_code == 201
    cert_b = await upload(client, b, test_ca.issue(["*.b.test"]))
    platform = await upload(client, admin, test_ca.issue([server["hostname"]]))
    await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": platform["id"]},
                     headers=admin)

    seen_by_a = await list_all(client, "/v1/events", a)
    assert {e["account_id"] for e in seen_by_a} == {account_a}
    assert {e["kind"] for e in seen_by_a} == {"token.created", "certificate.uploaded", "binding.set"}
    seen_by_b = await list_all(client, "/v1/events", b)
    assert {e["account_id"] for e in seen_by_b} == {account_b}
    # Every filter narrows B's own events; none widens them.
    for params in ({"account_id": account_a}, {"subject": cert_a["id"]}, {"subject": "a.test"},
                   {"subject": server["id"]}, {"kind": "binding.set"},
                   {"kind": "server.mail_certificate_changed"}, {"subject": platform["id"]}):
        page = (await client.get("/v1/events", params={**params, "count": "true"}, headers=b)).json()
        assert page == {"items": [], "next_cursor": None, "total": 0}, params
    # A's event by id: 404 for B, as for one that does not exist; an admin's cursor does not widen B's view.
    a_event = seen_by_a[-1]["id"]
    assert_problem(await client.get(f"/v1/events/{a_event}", headers=b), 404, "not_found")
    assert (await client.get(f"/v1/events/{a_event}", headers=a)).json() == seen_by_a[-1]
    assert_problem(await client.get("/v1/events/999999999", headers=admin), 404, "not_found")
    first = (await client.get("/v1/events", params={"limit": 1}, headers=admin)).json()
    rest = await list_all(client, "/v1/events", b, cursor=first["next_cursor"])
    assert {e["account_id"] for e in rest} <= {account_b} and rest
    # An admin sees all, the platform's too, and filters by account.
    everything = await list_all(client, "/v1/events", admin)
    assert {e["account_id"] for e in everything} >= {account_a, account_b, None}
    assert await list_all(client, "/v1/events", admin, account_id=account_a) == seen_by_a
    assert cert_b["id"] in {e["subjects"].get("certificate") for e in everything}


async def test_filters_and_paging(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "f.test", server["id"], account_id)
    certs = [await upload(client, customer, test_ca.issue(["*.f.test"])) for _ in range(3)]
    for service in ("mail", "webmail"):
        await client.put(f"/v1/domains/f.test/bindings/{service}", json={"certificate_id": certs[0]["id"]},
                         headers=customer)
    await client.delete("/v1/domains/f.test/bindings/mail", headers=customer)

    both = await list_all(client, "/v1/events", customer, kind=["binding.set", "binding.removed"], limit=1)
    assert [e["kind"] for e in both] == ["binding.set", "binding.set", "binding.removed"]
    # Deleting the domain removes its last binding: an event too, with why.
    assert (await client.delete("/v1/domains/f.test", headers=admin)).status_code == 204
    gone = (await list_all(client, "/v1/events", customer, kind="binding.removed"))[-1]
    assert gone["data"] == {"service": "webmail", "host_name": "webmail.f.test", "reason": "domain_deleted"}
    about = await list_all(client, "/v1/events", customer, subject=certs[0]["id"], limit=2)
    assert [e["kind"] for e in about] == ["certificate.uploaded", "binding.set", "binding.set", "binding.removed",
                                          "binding.removed"]
    assert [e["kind"] for e in await list_all(client, "/v1/events", customer, subject="f.test")] == \
        ["binding.set", "binding.set", "binding.removed", "binding.removed"]
    everything = await list_all(client, "/v1/events", customer)
    since = everything[3]["occurred_at"]
    later = await list_all(client, "/v1/events", customer, since=since)
    assert later and all(e["occurred_at"] >= since for e in later) and later[-1] == everything[-1]
    future = (utc_now() + timedelta(days=1)).isoformat()
    assert await list_all(client, "/v1/events", customer, since=future) == []
    # Refusals are coded 422s, never 500s.
    for params, code in (({"kind": "no.such"}, "validation_error"), ({"since": "yesterday"}, "validation_error"),
                         ({"subject": "x" * 300}, "validation_error"), ({"cursor": "garbage"}, "invalid_cursor"),
                         ({"since": "0001-01-01T00:00:00+01:00"}, "validation_error"),
                         ({"sort": "id"}, "unknown_parameter")):
        assert_problem(await client.get("/v1/events", params=params, headers=customer), 422, code)
    for bad in ("0", "-1", "abc", str(2**63)):
        r = await client.get(f"/v1/events/{bad}", headers=customer)
        assert r.status_code == 422, (bad, r.text)


async def test_a_change_that_does_not_commit_leaves_no_event(app, admin, context, customer_headers):
    """The event is written in the change's own transaction: when that commit fails, neither
    the change nor its event is stored (it was written, then rolled back with it)."""
    account_id, _ = await customer_headers()
    seen_inside: list[int] = []

    def refuse(session):
        seen_inside.append(session.execute(select(func.count()).select_from(Event)).scalar_one())
        raise RuntimeError("database went away during commit")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    session_class = context.sessionmaker.kw["sync_session_class"]
    async with httpx.AsyncClient(transport=transport, base_url="http://certpost.test") as client:
        before = await list_all(client, "/v1/events", admin)
        tokens_before = await list_all(client, "/v1/tokens", admin)
        event.listen(session_class, "before_commit", refuse)
        try:
            r = await client.post("/v1/tokens", json={"role": "customer", "account_id": account_id}, headers=admin)
        finally:
            event.remove(session_class, "before_commit", refuse)
        assert r.status_code == 500, r.text
        assert seen_inside == [len(before) + 1]  # the event was in the transaction that failed
        assert await list_all(client, "/v1/events", admin) == before
        assert await list_all(client, "/v1/tokens", admin) == tokens_before


async def test_a_refused_change_records_nothing(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "r.test", server["id"], account_id)
    other = await upload(client, customer, test_ca.issue(["*.elsewhere.test"]))
    before = await list_all(client, "/v1/events", admin)
    r = await client.put("/v1/domains/r.test/bindings/mail", json={"certificate_id": other["id"]}, headers=customer)
    assert_problem(r, 422, "hostname_not_covered")
    r = await client.put(f"/v1/certificates/{other['id']}", json={"certificate_pem": "x", "private_key_pem": "y"},
                         headers=customer)
    assert r.status_code == 422
    assert await list_all(client, "/v1/events", admin) == before


async def test_no_key_material_reaches_the_log(client, admin, context, test_ca, customer_headers):
    """Names and descriptions a user types are redacted when they look like key material, and
    nothing else in the log is a key: the whole table is scanned."""
    account_id, customer = await customer_headers()
    issued = test_ca.issue(["k.test"])
    pem_name = "-----BEGIN PRIVATE KEY----- not really"
    await upload(client, customer, issued, name=pem_name)
    r = await client.post("/v1/tokens", json={"role": "customer", "account_id": account_id,
                                              "description": "my private key token"}, headers=admin)
    assert r.status_code == 201
    events = await list_all(client, "/v1/events", admin)
    assert only(events, "certificate.uploaded")["data"]["name"] == "[redacted]"
    assert_no_key_material(events, issued.key_pem)
    async with context.sessionmaker() as session:
        rows = (await session.execute(text("SELECT subjects, data FROM events"))).all()
    assert rows and not any(m in str(rows) for m in KEY_MARKERS)
