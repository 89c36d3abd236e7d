"""One way to list (issue 9): every list operation pages the same way, on SQLite and PostgreSQL.

Each list answers ``{items, next_cursor, total}``; paging with any ``limit`` returns every row
once, in the documented order; ``count=true`` gives the total; a customer token sees its own
account's rows only (``Caller.visible_rows``); a bad cursor, a limit out of bounds and a query
parameter the operation does not take are coded 422 problems.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from app.acme.models import CertificateOrder, DnsProvider
from app.certificate_requests.models import CertificateRequest
from app.db import new_id
from app.deployments.models import Deployment
from app.paging import InvalidCursor, Order
from app.servers.models import Server
from tests.support.api import assert_problem, create_domain, create_server, list_all

LISTS = [
    "/v1/accounts",
    "/v1/tokens",
    "/v1/servers",
    "/v1/servers/{server}/deployments",
    "/v1/domains",
    "/v1/certificates",
    "/v1/dns-providers",
    "/v1/certificate-orders",
    "/v1/certificate-requests",
    "/v1/events",
]


def _at(row: dict, field: str = "created_at") -> datetime:
    return datetime.fromisoformat(row[field])


# The documented order of each list, as a sort key of its rows (and whether it is descending).
ORDERS = {
    "/v1/accounts": (lambda r: (_at(r), r["id"]), False),
    "/v1/tokens": (lambda r: (_at(r), r["id"]), False),
    "/v1/servers": (lambda r: r["name"], False),
    "/v1/servers/{server}/deployments": (lambda r: r["generation"], True),
    "/v1/domains": (lambda r: r["name"], False),
    "/v1/certificates": (lambda r: (_at(r), r["id"]), False),
    "/v1/dns-providers": (lambda r: (r["name"], r["id"]), False),
    "/v1/certificate-orders": (lambda r: (_at(r), r["id"]), True),
    "/v1/certificate-requests": (lambda r: (_at(r), r["id"]), True),
    "/v1/events": (lambda r: r["id"], False),
}


@pytest.fixture
async def tenants(client, admin, context, customer_headers):
    """Two customer accounts with rows in every list, and platform rows beside them. Some rows
    share their first sort column (same name, same creation time), so the tie-breaking id is
    exercised too."""
    servers = [await create_server(client, admin, name=f"mx{i}", hostname=f"mx{i}.hosting.test") for i in (2, 1, 3)]
    server = servers[1]
    alpha_id, alpha = await customer_headers("alpha")
    beta_id, beta = await customer_headers("beta")
    await customer_headers("delta")  # an account with no rows
    for name in ("c.alpha.test", "a.alpha.test", "b.alpha.test"):
        await create_domain(client, admin, name, server["id"], alpha_id)
    for name in ("b.beta.test", "a.beta.test"):
        await create_domain(client, admin, name, server["id"], beta_id)
    for headers, names in ((alpha, ["x.alpha.test"]), (alpha, ["y.alpha.test"]), (beta, ["x.beta.test"]),
                           (admin, ["platform.test"])):
        r = await client.post("/v1/certificates/self-signed", json={"names": names}, headers=headers)
        assert r.status_code == 201, r.text
    same_time = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    async with context.sessionmaker() as session:
        for account_id, name in ((None, "platform"), (alpha_id, "zone"), (alpha_id, "zone"), (beta_id, "zone")):
            session.add(DnsProvider(id=new_id(), account_id=account_id, name=name, kind="rfc2136",
                                    settings={"server": "192.0.2.53", "port": 53, "key_name": "k"},
                                    secret_ciphertext=b"", secret_wrapped=b"", master_key_id=""))
        for account_id, created in ((alpha_id, same_time), (alpha_id, same_time), (alpha_id, same_time + timedelta(1)),
                                    (beta_id, same_time), (beta_id, same_time - timedelta(1))):
            session.add(CertificateOrder(
                id=new_id(), account_id=account_id, domain="alpha.test", names=["alpha.test"], challenge="dns-01",
                key_type="ec-p256", status="valid", created_at=created, updated_at=created,
            ))
        for account_id, created in ((alpha_id, same_time), (alpha_id, same_time), (beta_id, same_time),
                                    (None, same_time - timedelta(1))):
            session.add(CertificateRequest(
                id=new_id(), account_id=account_id, names=["alpha.test"], key_type="ecdsa-p256", csr_pem="",
                public_key_sha256="0" * 64, status="pending", created_at=created, updated_at=created,
            ))
        for generation in range(100, 105):
            session.add(Deployment(server_id=server["id"], generation=generation, reason="test", status="applied"))
        await session.commit()
    return {"server": server, "alpha": (alpha_id, alpha), "beta": (beta_id, beta)}


def _path(template: str, tenants) -> str:
    return template.format(server=tenants["server"]["id"])


@pytest.mark.parametrize("template", LISTS)
async def test_every_list_pages_each_row_once_in_order(client, admin, tenants, template):
    path = _path(template, tenants)
    whole = (await client.get(path, params={"limit": 1000, "count": "true"}, headers=admin)).json()
    assert set(whole) == {"items", "next_cursor", "total"}
    rows = whole["items"]
    assert whole["next_cursor"] is None and whole["total"] == len(rows) >= 3, whole
    key, descending = ORDERS[template]
    assert rows == sorted(rows, key=key, reverse=descending)
    ids = [r["id"] for r in rows]
    for limit in range(1, len(rows) + 2):
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": limit, "count": "true", **({"cursor": cursor} if cursor else {})}
            page = (await client.get(path, params=params, headers=admin)).json()
            pages += 1
            assert page["total"] == len(rows) and len(page["items"]) <= limit
            seen += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids, (limit, seen, ids)
        assert pages == max(1, math.ceil(len(rows) / limit))
    # Without count=true no count is made: total is null.
    assert (await client.get(path, params={"limit": 1}, headers=admin)).json()["total"] is None


async def test_a_cursor_survives_the_row_it_points_at(client, admin, tenants):
    """Keyset paging: deleting the last row shown does not repeat or skip any row."""
    first = (await client.get("/v1/domains", params={"limit": 2}, headers=admin)).json()
    assert [d["name"] for d in first["items"]] == ["a.alpha.test", "a.beta.test"]
    assert (await client.delete("/v1/domains/a.beta.test", headers=admin)).status_code == 204
    rest = await list_all(client, "/v1/domains", admin, cursor=first["next_cursor"])
    assert [d["name"] for d in rest] == ["b.alpha.test", "b.beta.test", "c.alpha.test"]


async def test_customers_see_their_own_rows_only(client, admin, tenants):
    alpha_id, alpha = tenants["alpha"]
    beta_id, beta = tenants["beta"]
    # events: two self-signed uploads and its token's creation for alpha, one and its token for beta
    expected = {"/v1/domains": (3, 2), "/v1/certificates": (2, 1), "/v1/certificate-orders": (3, 2),
                "/v1/certificate-requests": (2, 1), "/v1/events": (3, 2)}
    for path, (n_alpha, n_beta) in expected.items():
        for (account_id, headers), n in (((alpha_id, alpha), n_alpha), ((beta_id, beta), n_beta)):
            for limit in (1, 2, 100):
                rows = await list_all(client, path, headers, limit=limit)
                assert len(rows) == n and {r["account_id"] for r in rows} == {account_id}, (path, rows)
            page = (await client.get(path, params={"count": "true", "limit": 1}, headers=headers)).json()
            assert page["total"] == n
            # Naming their own account changes nothing; naming another lists nothing.
            assert len(await list_all(client, path, headers, account_id=account_id)) == n
            other = beta_id if account_id == alpha_id else alpha_id
            page = (await client.get(path, params={"account_id": other, "count": "true"}, headers=headers)).json()
            assert page == {"items": [], "next_cursor": None, "total": 0}
            # An admin filters by account with the same parameter.
            assert len(await list_all(client, path, admin, account_id=account_id)) == n
    # DNS providers: a customer's own and the platform's, which it may use.
    providers = await list_all(client, "/v1/dns-providers", alpha, limit=1)
    assert sorted((p["account_id"] or "") for p in providers) == ["", alpha_id, alpha_id]
    assert {p["account_id"] for p in await list_all(client, "/v1/dns-providers", alpha, account_id=alpha_id)} == {alpha_id}
    assert await list_all(client, "/v1/dns-providers", alpha, account_id=beta_id) == []
    assert len(await list_all(client, "/v1/dns-providers", admin)) == 4
    # A cursor taken from an admin's page does not widen what a customer sees.
    admin_page = (await client.get("/v1/domains", params={"limit": 1}, headers=admin)).json()
    rows = await list_all(client, "/v1/domains", beta, cursor=admin_page["next_cursor"])
    assert {r["account_id"] for r in rows} == {beta_id}
    # Platform lists stay admin-only.
    for path in ("/v1/accounts", "/v1/tokens", "/v1/servers", f"/v1/servers/{tenants['server']['id']}/deployments"):
        assert_problem(await client.get(path, headers=alpha), 403, "forbidden")


def _cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


@pytest.mark.parametrize("template", LISTS)
async def test_bad_paging_input_is_a_coded_422(client, admin, tenants, template):
    path = _path(template, tenants)
    other = "/v1/domains" if template != "/v1/domains" else "/v1/servers"
    foreign = (await client.get(_path(other, tenants), params={"limit": 1}, headers=admin)).json()["next_cursor"]
    assert foreign
    for cursor in ("garbage", "%%%", "W10", _cursor("domains"), _cursor(), _cursor("x", 1, 2, 3, 4), foreign,
                   "A" * 5000, _cursor(template.rsplit("/", 1)[-1], "\x00", "\x00")):
        r = await client.get(path, params={"cursor": cursor}, headers=admin)
        assert_problem(r, 422, "invalid_cursor")
    for limit in ("0", "-1", "1001", "x", "99999999999999999999"):
        assert_problem(await client.get(path, params={"limit": limit}, headers=admin), 422, "validation_error")
    assert_problem(await client.get(path, params={"count": "maybe"}, headers=admin), 422, "validation_error")
    problem = assert_problem(await client.get(path, params={"sort": "-name", "q": "d0001"}, headers=admin),
                             422, "unknown_parameter")
    # the certificate list sorts, so there only `q` is unknown
    assert problem["parameter"] in {"sort", "q"} and "q" in problem["detail"]
    assert {"limit", "cursor", "count"} <= set(problem["allowed"])
    assert (await client.get(path, params={"limit": 1, "count": "false"}, headers=admin)).status_code == 200


async def test_unknown_parameters_are_refused_on_every_operation(client, admin, tenants):
    server_id = tenants["server"]["id"]
    problem = assert_problem(await client.get("/v1/domains", params={"sort": "-name", "q": "d0001"}, headers=admin),
                             422, "unknown_parameter")
    assert problem["parameter"] == "sort"
    assert set(problem["allowed"]) == {"server_id", "account_id", "limit", "cursor", "count"}
    # A known parameter still works, and a misspelt one is not read as "no filter".
    only = (await client.get("/v1/domains", params={"account_id": tenants["beta"][0]}, headers=admin)).json()
    assert len(only["items"]) == 2
    assert_problem(await client.get("/v1/domains", params={"acount_id": "x"}, headers=admin), 422, "unknown_parameter")
    # Operations that take no query parameter at all.
    problem = assert_problem(await client.get(f"/v1/servers/{server_id}", params={"x": "1"}, headers=admin),
                             422, "unknown_parameter")
    assert problem["allowed"] == [] and "takes no query parameters" in problem["detail"]
    assert_problem(await client.get("/healthz", params={"verbose": "1"}), 422, "unknown_parameter")
    # A refused write writes nothing.
    r = await client.post("/v1/accounts", params={"dry_run": "1"}, json={"name": "gamma"}, headers=admin)
    assert_problem(r, 422, "unknown_parameter")
    assert "gamma" not in {a["name"] for a in await list_all(client, "/v1/accounts", admin)}
    # A repeated known parameter is not unknown.
    assert (await client.get("/v1/domains", params=[("limit", "1"), ("limit", "2")], headers=admin)).status_code == 200


# --- the helper itself (no database) -----------------------------------------------------------

def test_cursor_round_trip_and_checks():
    order = Order("servers", (Server.name,))
    cursor = order.encode(("mx1",))
    assert "=" not in cursor and order.decode(cursor) == ("mx1",)
    assert Order("other", (Server.name,)).encode(("mx1",)) != cursor
    with pytest.raises(InvalidCursor):
        Order("other", (Server.name,)).decode(cursor)
    with pytest.raises(InvalidCursor):
        order.decode(_cursor("servers", "x" * 201))  # longer than the column
    dated = Order("certificate-orders", (CertificateOrder.created_at, CertificateOrder.id), descending=True)
    when = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert dated.decode(dated.encode((when, "abc"))) == (when, "abc")
    for bad in (["certificate-orders", 5, "abc"], ["certificate-orders", "0001-01-01T00:00:00+14:00", "abc"],
                ["certificate-orders", "2026-01-01", None]):
        with pytest.raises(InvalidCursor):
            dated.decode(_cursor(*bad))


def test_the_contract_documents_the_envelope_and_the_refusals():
    from app.cli import openapi_document

    doc = openapi_document()
    lists = {path: item["get"] for path, item in doc["paths"].items()
             if "get" in item and {"limit", "cursor", "count"} <= {p["name"] for p in item["get"].get("parameters", [])}}
    # the TLS status of many domains (tests/test_domain_tls_list.py) and the webhooks and their
    # deliveries (tests/webhooks/) page the same way
    listed = {path.replace("{server}", "{server_id}") for path in LISTS}
    assert set(lists) == listed | {"/v1/domain-tls", "/v1/webhooks", "/v1/webhooks/{webhook_id}/deliveries"}
    for path, op in lists.items():
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert schema.endswith("Page") and schema != "Page", path
        assert set(doc["components"]["schemas"][schema]["properties"]) == {"items", "next_cursor", "total"}
        assert "invalid_cursor" in op["responses"]["422"]["description"], path
        assert all(p.get("description") for p in op["parameters"] if p["in"] == "query"), path
        assert op.get("description"), path
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "unknown_parameter" in op["responses"]["422"]["description"], (method, path)
