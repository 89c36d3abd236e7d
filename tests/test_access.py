"""Authentication, roles, and tenant isolation on every route that takes an id.

The isolation test walks the application's routes, so a new route with a path parameter
cannot be added without this test knowing how to probe it.
"""

import pytest
from fastapi.routing import APIRoute

from app.deps import get_admin
from tests.support.api import assert_problem, create_domain, create_server, upload, upload_body


def api_routes(routes):
    """Every APIRoute, looking inside included routers (FastAPI keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


def _needs(dependant, target) -> bool:
    return any(d.call is target or _needs(d, target) for d in dependant.dependencies)


async def test_requests_without_valid_token_are_refused(client, admin, context):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer cpt_" + "0" * 36 + "_x"}, {"Authorization": "Basic abc"}):
        r = await client.get("/v1/certificates", headers=headers)
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"] == "Bearer"


async def test_token_lifecycle(client, admin, customer_headers):
    account_id, _ = await customer_headers()
    r = await client.post("/v1/tokens", json={"role": "customer", "account_id": account_id}, headers=admin)
    assert r.status_code == 201, r.text
    token = r.json()
    assert token["token"].startswith("cpt_") and token["role"] == "customer"
    listed = (await client.get("/v1/tokens", params={"account_id": account_id}, headers=admin)).json()["items"]
    assert token["id"] in [t["id"] for t in listed] and all("token" not in t for t in listed)
    assert all(t["account_id"] == account_id for t in listed)
    headers = {"Authorization": f"Bearer {token['token']}"}
    assert (await client.get("/v1/certificates", headers=headers)).status_code == 200
    assert (await client.delete(f"/v1/tokens/{token['id']}", headers=admin)).status_code == 204
    assert_problem(await client.get("/v1/certificates", headers=headers), 401, "unauthenticated")
    assert_problem(await client.delete(f"/v1/tokens/{token['id']}", headers=admin), 404, "not_found")
    # Wrong secret with a real id.
    forged = token["token"][: -4] + "AAAA"
    assert_problem(await client.get("/v1/certificates", headers={"Authorization": f"Bearer {forged}"}), 401, "unauthenticated")


async def test_token_rules(client, admin):
    assert_problem(await client.post("/v1/tokens", json={"role": "customer"}, headers=admin), 422, "validation_error")
    assert_problem(await client.post("/v1/tokens", json={"role": "customer", "account_id": "missing"}, headers=admin), 422, "unknown_account")
    r = await client.post("/v1/tokens", json={"role": "admin"}, headers=admin)
    assert r.status_code == 201 and r.json()["account_id"] is None


async def test_accounts(client, admin):
    r = await client.post("/v1/accounts", json={"name": "Shop"}, headers=admin)
    assert r.status_code == 201 and r.json()["name"] == "Shop"
    assert_problem(await client.post("/v1/accounts", json={"name": "Shop"}, headers=admin), 409, "account_exists")
    assert [a["name"] for a in (await client.get("/v1/accounts", headers=admin)).json()["items"]] == ["Shop"]


def _admin_only(route: APIRoute) -> bool:
    return _needs(route.dependant, get_admin)


async def test_tenant_isolation_on_every_route(app, client, admin, test_ca, customer_headers):
    """Customer B probing customer A's ids gets 404 (as if missing), or 403 on admin routes."""
    server = await create_server(client, admin)
    account_a, a = await customer_headers("A")
    _account_b, b = await customer_headers("B")
    await create_domain(client, admin, "a.test", server["id"], account_a)
    cert_a = await upload(client, a, test_ca.issue(["*.a.test"]))
    await client.put("/v1/domains/a.test/bindings/webmail", json={"certificate_id": cert_a["id"]}, headers=a)
    cert_b = await upload(client, b, test_ca.issue(["*.a.test"]))
    token = (await client.post("/v1/tokens", json={"role": "admin"}, headers=admin)).json()
    request_a = (await client.post("/v1/certificate-requests", json={"names": ["a.test"]}, headers=a)).json()
    enrolment = (await client.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={}, headers=admin)).json()
    events_of_a = (await client.get("/v1/events", params={"subject": cert_a["id"]}, headers=admin)).json()["items"]
    webhook_a = (await client.post("/v1/webhooks", json={"url": "https://1.1.1.1/hooks", "kinds": ["binding.set"]},
                                   headers=a)).json()

    values = {
        "request_id": request_a["id"],
        "enrolment_token_id": enrolment["id"],
        "event_id": events_of_a[0]["id"],
        "webhook_id": webhook_a["id"],
        "delivery_id": "00000000-0000-0000-0000-000000000000",
        "certificate_id": cert_a["id"],
        "name": "a.test",
        "server_id": server["id"],
        "token_id": token["id"],
        "service": "webmail",
        "deployment_id": "00000000-0000-0000-0000-000000000000",
        "order_id": "00000000-0000-0000-0000-000000000000",
        "provider_id": "00000000-0000-0000-0000-000000000000",
    }
    bodies = {
        ("PUT", "/v1/certificates/{certificate_id}"): upload_body(test_ca.issue(["*.a.test"])),
        ("PUT", "/v1/domains/{name}/bindings/{service}"): {"certificate_id": cert_b["id"]},
        ("PUT", "/v1/servers/{server_id}/mail-certificate"): {"certificate_id": cert_b["id"]},
        ("POST", "/v1/certificate-requests/{request_id}/certificate"): {
            "certificate_pem": test_ca.issue(["a.test"]).cert_pem},
    }
    probed = 0
    for route in api_routes(app.routes):
        if "{" not in route.path:
            continue
        params = [p.name for p in route.dependant.path_params]
        missing = [p for p in params if p not in values]
        assert not missing, f"{route.path}: teach this test how to probe {missing}"
        path = route.path.format(**{p: values[p] for p in params})
        for method in route.methods:
            body = bodies.get((method, route.path), {} if method in {"POST", "PUT", "PATCH"} else None)
            r = await client.request(method, path, headers=b, json=body)
            expected = 403 if _admin_only(route) else 404
            assert r.status_code == expected, f"{method} {route.path}: {r.status_code} {r.text}"
            probed += 1
    assert probed >= 10

    # Nothing of A's changed.
    after = (await client.get(f"/v1/certificates/{cert_a['id']}", headers=a)).json()
    assert after["revision"] == 1 and after["bindings"][0]["hostname"] == "webmail.a.test"
    assert (await client.get("/v1/domains/a.test", headers=a)).status_code == 200
    assert (await client.get(f"/v1/certificate-requests/{request_a['id']}", headers=a)).json()["status"] == "pending"


async def test_customer_sees_only_own_rows(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin)
    account_a, a = await customer_headers("A")
    account_b, b = await customer_headers("B")
    await create_domain(client, admin, "a.test", server["id"], account_a)
    await create_domain(client, admin, "b.test", server["id"], account_b)
    await upload(client, a, test_ca.issue(["*.a.test"]))
    await upload(client, b, test_ca.issue(["*.b.test"]))
    assert [d["name"] for d in (await client.get("/v1/domains", headers=a)).json()["items"]] == ["a.test"]
    assert [c["sans"] for c in (await client.get("/v1/certificates", headers=a)).json()["items"]] == [["*.a.test"]]
    # Server defaults (platform certificates) are admin-only too.
    assert len((await client.get("/v1/certificates", headers=admin)).json()["items"]) == 3
    assert_problem(await client.get(f"/v1/certificates/{server['mail_certificate_id']}", headers=a), 404, "not_found")
    r = await client.post("/v1/certificates", json=upload_body(test_ca.issue(["*.a.test"]), account_id=account_b), headers=a)
    assert_problem(r, 403, "forbidden")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/servers"), ("GET", "/v1/servers"), ("POST", "/v1/domains"), ("POST", "/v1/accounts"),
     ("GET", "/v1/accounts"), ("POST", "/v1/tokens"), ("GET", "/v1/tokens")],
)
async def test_admin_only_collection_routes(client, customer_headers, method, path):
    _account, headers = await customer_headers()
    assert_problem(await client.request(method, path, headers=headers, json={}), 403, "forbidden")
