"""The domain and certificate lists on the hot read path (issue 8): resolved by hand
(app/direct.py) for plain queries, FastAPI's solver for the rest, their statements on the
read connection (app/reads.py) and their JSON encoded once from dicts. The answer must be what
the response models write, byte for byte, whichever path a request took."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import update

from app.certificates.models import Certificate
from app.certificates.schemas import CertificatePage
from app.direct import shortcut
from app.domains.schemas import DomainPage
from app.main import create_app
from tests.support.api import assert_problem, create_domain, create_server, upload


async def test_the_domain_list_is_the_models_json(client, admin, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    other_id, other = await customer_headers()
    for name in ("b.list.test", "a.list.test", "c.list.test"):
        await create_domain(client, admin, name, server["id"], account_id)
    await create_domain(client, admin, "o.list.test", server["id"], other_id)

    r = await client.get("/v1/domains", params={"limit": 2, "count": "true"}, headers=customer)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    assert DomainPage.model_validate_json(r.content).model_dump_json().encode() == r.content
    page = r.json()
    assert [d["name"] for d in page["items"]] == ["a.list.test", "b.list.test"] and page["total"] == 3
    for item in page["items"]:  # each row as the single-domain route (a model) shows it
        assert (await client.get(f"/v1/domains/{item['name']}", headers=customer)).json() == item
    rest = await client.get("/v1/domains", params={"cursor": page["next_cursor"]}, headers=customer)
    assert [d["name"] for d in rest.json()["items"]] == ["c.list.test"] and rest.json()["next_cursor"] is None

    # Spellings only FastAPI's solver reads give the same bytes as the plain ones.
    for params in ({"limit": "02", "count": "1"}, {"limit": "2", "count": "yes"}):
        assert (await client.get("/v1/domains", params=params, headers=customer)).content == r.content
    # Visibility: another account's customer, the admin with filters.
    assert [d["name"] for d in (await client.get("/v1/domains", headers=other)).json()["items"]] == ["o.list.test"]
    assert (await client.get("/v1/domains", params={"account_id": account_id}, headers=other)).json()["items"] == []
    mine = await client.get("/v1/domains", params={"server_id": server["id"], "account_id": account_id}, headers=admin)
    assert [d["name"] for d in mine.json()["items"]] == ["a.list.test", "b.list.test", "c.list.test"]


async def test_the_domain_list_refuses_as_before(client, admin):
    for limit in ("0", "1001", "abc", "", "-1"):
        assert_problem(await client.get("/v1/domains", params={"limit": limit}, headers=admin), 422,
                       "validation_error")
    assert_problem(await client.get("/v1/domains", params={"count": "maybe"}, headers=admin), 422, "validation_error")
    assert_problem(await client.get("/v1/domains", params={"cursor": "garbage"}, headers=admin), 422, "invalid_cursor")
    assert_problem(await client.get("/v1/domains", params={"q": "x"}, headers=admin), 422, "unknown_parameter")
    for headers in ({}, {"Authorization": "Bearer cpt_x_y"}):
        assert_problem(await client.get("/v1/domains", headers=headers), 401, "unauthenticated")
        # a bad token comes before a bad parameter, on either path
        assert_problem(await client.get("/v1/domains", params={"limit": "abc"}, headers=headers), 401,
                       "unauthenticated")
    r = await client.get("/v1/domains", headers={**admin, "X-Request-ID": "list-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "list-1" and r.headers["etag"]


async def test_the_certificate_list_is_the_models_json(context, client, admin, customer_headers, test_ca,
                                                       untrusted_ca):
    """Rows with bindings of every kind (a domain's, the server's defaults), trusted and
    untrusted, with renewal errors stored in the current shape and in the older one."""
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    _other_id, other = await customer_headers()
    await create_domain(client, admin, "l.test", server["id"], account_id)
    bound = await upload(client, customer, test_ca.issue(["webmail.l.test", "mail.l.test"]))
    unknown_issuer = await upload(client, customer, untrusted_ca.issue(["x.l.test"]))
    for service in ("webmail", "mail"):
        r = await client.put(f"/v1/domains/l.test/bindings/{service}", json={"certificate_id": bound["id"]},
                             headers=customer)
        assert r.status_code == 201, r.text
    async with context.sessionmaker() as session:
        at = datetime(2026, 11, 30, 9, 20, tzinfo=UTC)
        await session.execute(update(Certificate).where(Certificate.id == bound["id"]).values(
            renewal_status="failed", renewal_at=at,
            renewal_error={"code": "dns_update_refused", "detail": "REFUSED", "step": "dns_update", "status": 5}))
        await session.execute(update(Certificate).where(Certificate.id == unknown_issuer["id"]).values(
            renewal_error={"message": "the CA said no", "code": "order_invalid", "at": at.isoformat(),
                           "details": {"problem": {"type": "urn:ietf:params:acme:error:rejectedIdentifier"}}}))
        await session.commit()

    r = await client.get("/v1/certificates", params={"count": "true"}, headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    assert CertificatePage.model_validate_json(r.content).model_dump_json().encode() == r.content
    items = r.json()["items"]
    assert {b["kind"] for item in items for b in item["bindings"]} >= {"domain", "server-mail", "server-default"}
    assert {item["trust"]["reason"] for item in items} >= {None, "self_signed", "unknown_issuer"}
    assert r.json()["total"] == len(items) >= 3
    for item in items:  # each row as the single-certificate route (a model) shows it
        assert (await client.get(f"/v1/certificates/{item['id']}", headers=admin)).json() == item
    errors = {item["id"]: item["renewal_error"] for item in items}
    assert errors[bound["id"]]["message"] == "REFUSED" and errors[bound["id"]]["details"] == {"status": 5}
    assert errors[unknown_issuer["id"]]["at"] == "2026-11-30T09:20:00Z"

    # The customer sees its own two; another customer none of them.
    mine = (await client.get("/v1/certificates", headers=customer)).json()["items"]
    assert {c["id"] for c in mine} == {bound["id"], unknown_issuer["id"]}
    assert (await client.get("/v1/certificates", headers=other)).json()["items"] == []
    # Filters and sorts on the plain path, a time only the solver parses: the same rows.
    covering = (await client.get("/v1/certificates", params=[("covers", "mail.l.test"), ("covers", "webmail.l.test")],
                                 headers=customer)).json()["items"]
    assert [c["id"] for c in covering] == [bound["id"]]
    picked = await client.get("/v1/certificates", params={"usable_for": "l.test", "service": "mail"}, headers=customer)
    assert [c["id"] for c in picked.json()["items"]] == [bound["id"]], picked.text
    by_expiry = await client.get("/v1/certificates", params={"sort": "-not_after", "limit": 1000}, headers=customer)
    later = await client.get("/v1/certificates", params={"sort": "-not_after", "expires_before": "2999-01-01T00:00:00Z"},
                             headers=customer)
    assert later.content == by_expiry.content
    assert_problem(await client.get("/v1/certificates", params={"sort": "name"}, headers=admin), 422,
                   "validation_error")
    assert_problem(await client.get("/v1/certificates", params={"service": "mail"}, headers=admin), 422,
                   "invalid_filter")
    assert_problem(await client.get("/v1/certificates", params={"expires_before": "soon"}, headers=admin), 422,
                   "validation_error")


async def test_shortcut_routes_answer_what_the_routes_answered(context, client, admin, customer_headers, test_ca):
    """The hot routes are tried first (app.direct.shortcut) and answer exactly what the
    application without the copies answers: the same status, headers and body for their own
    requests, for other methods on their paths (405 and its Allow) and for the paths beside."""
    app = create_app(context=context, run_worker=False)
    assert shortcut(app) == [], "a second pass finds every hot route shadowed by its copy"
    assert [r.path for r in app.router.routes[:4]] == [
        "/v1/domains", "/v1/domains/{name}/tls", "/v1/domain-tls", "/v1/certificates"]
    plain = create_app(context=context, run_worker=False)
    plain.router.routes[:] = [r for r in plain.router.routes if type(r).__name__ != "_Shortcut"]
    for application in (app, plain):
        application.state.ctx = context
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "s.test", server["id"], account_id)
    await upload(client, customer, test_ca.issue(["mail.s.test"]))
    requests = [(method, path, params, headers)
                for path in ("/v1/domains", "/v1/domains/s.test/tls", "/v1/domain-tls", "/v1/certificates", "/v1/domains/s.test",
                             "/v1/domains/s.test/tls/", "/v1/domains/tls", "/v1/certificates/x")
                for method in ("GET", "HEAD", "PUT", "POST", "DELETE")
                for params, headers in (({}, customer), ({"limit": "x"}, customer), ({"q": "1"}, admin), ({}, {}))]
    transports = [httpx.ASGITransport(app=a) for a in (app, plain)]
    async with httpx.AsyncClient(transport=transports[0], base_url="http://certpost.test") as fast, \
            httpx.AsyncClient(transport=transports[1], base_url="http://certpost.test") as slow:
        for method, path, params, headers in requests:
            fast_answer, slow_answer = [
                await c.request(method, path, params=params, headers={**headers, "X-Request-ID": "same"})
                for c in (fast, slow)]
            assert _seen(fast_answer) == _seen(slow_answer), (method, path, params)


def _seen(answer: httpx.Response) -> tuple:
    return answer.status_code, answer.headers.get("allow"), answer.headers.get("content-type"), answer.content
