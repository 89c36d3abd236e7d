"""ETag and If-Match (RFC 9110 sections 8.8.3 and 13.1.1): concurrent edits do not overwrite each other.

The races run two requests at once against the real database (two pooled connections on
PostgreSQL, SQLite's one writer at a time): of two writes with the same If-Match, exactly one
wins and the other gets 412 ``precondition_failed``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from app.preconditions import Precondition, PreconditionFailed, parse_tags
from tests.support.api import assert_problem, create_domain, create_server, upload, upload_body

PLATFORM_NAMES = ["mx1.hosting.test"]


async def _hosted(client, admin, customer_headers, test_ca):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    certs = [await upload(client, customer, test_ca.issue(["*.a.test", "a.test"])) for _ in range(3)]
    return server, customer, certs


def test_if_match_parsing_is_strong_and_fails_closed():
    assert parse_tags('"a", W/"b" , "c"') == frozenset({'"a"', '"c"'})
    assert parse_tags("*") is None
    assert parse_tags("garbage") == frozenset()
    Precondition(None).require(None)  # no header: nothing required
    Precondition("*").require('"x"')
    Precondition('"x", "y"').require('"y"')
    for header, current in [('W/"x"', '"x"'), ("*", None), ('"x"', '"y"'), ("garbage", '"garbage"')]:
        with pytest.raises(PreconditionFailed):
            Precondition(header).require(current)


async def test_lost_update_on_a_binding_two_clients_one_wins(client, admin, customer_headers, test_ca):
    _server, customer, certs = await _hosted(client, admin, customer_headers, test_ca)
    a = certs[0]
    for _round in range(3):
        first = await client.get("/v1/domains/a.test/bindings/mail", headers=customer)
        second = await client.get("/v1/domains/a.test/bindings", headers=customer)
        assert first.status_code == second.status_code == 200
        seen = first.headers["ETag"]
        # Both clients read the same state, then both write with what they read, at once, each
        # a certificate other than the bound one (rebinding the same one changes nothing).
        current = first.json()["certificate_id"]
        results = await asyncio.gather(*(
            client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"]},
                       headers={**customer, "If-Match": seen})
            for cert in [c for c in certs if c["id"] != current][:2]
        ))
        statuses = Counter(r.status_code for r in results)
        assert statuses[412] == 1 and statuses[200] + statuses[201] == 1, [r.text for r in results]
        loser = next(r for r in results if r.status_code == 412)
        assert_problem(loser, 412, "precondition_failed")
        winner = next(r for r in results if r.status_code != 412)
        now = await client.get("/v1/domains/a.test/bindings/mail", headers=customer)
        assert now.json()["certificate_id"] == winner.json()["certificate_id"]
        assert now.headers["ETag"] == winner.headers["ETag"] != seen
        # The document's tag is also accepted, and is stale now too.
        stale = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": a["id"]},
                                 headers={**customer, "If-Match": second.headers["ETag"]})
        assert_problem(stale, 412, "precondition_failed")


async def test_binding_writes_honour_if_match(client, admin, customer_headers, test_ca):
    _server, customer, (a, b, _c) = await _hosted(client, admin, customer_headers, test_ca)
    unbound = await client.get("/v1/domains/a.test/bindings/webmail", headers=customer)
    assert unbound.json()["source"] == "server-default"
    created = await client.put("/v1/domains/a.test/bindings/webmail", json={"certificate_id": a["id"]},
                               headers={**customer, "If-Match": unbound.headers["ETag"]})
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/v1/domains/a.test/bindings/webmail"
    # The tag of the state before is stale now, for PUT and for DELETE.
    for method, kwargs in (("PUT", {"json": {"certificate_id": b["id"]}}), ("DELETE", {})):
        r = await client.request(method, "/v1/domains/a.test/bindings/webmail",
                                 headers={**customer, "If-Match": unbound.headers["ETag"]}, **kwargs)
        assert_problem(r, 412, "precondition_failed")
    # The document's tag changed with the webmail binding, and not with the mail one's default.
    doc = await client.get("/v1/domains/a.test/bindings", headers=customer)
    r = await client.put("/v1/domains/a.test/bindings/webmail", json={"certificate_id": b["id"]},
                         headers={**customer, "If-Match": doc.headers["ETag"]})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] != created.headers["ETag"]
    r = await client.delete("/v1/domains/a.test/bindings/webmail", headers={**customer, "If-Match": r.headers["ETag"]})
    assert r.status_code == 204, r.text
    # Without If-Match, the last writer wins as before.
    r = await client.put("/v1/domains/a.test/bindings/webmail", json={"certificate_id": a["id"]}, headers=customer)
    assert r.status_code == 201


async def test_certificate_replace_and_delete_honour_if_match(client, admin, customer_headers, test_ca):
    _server, customer, (a, _b, _c) = await _hosted(client, admin, customer_headers, test_ca)
    got = await client.get(f"/v1/certificates/{a['id']}", headers=customer)
    seen = got.headers["ETag"]
    fresh = upload_body(test_ca.issue(["*.a.test", "a.test"]))
    replaced = await client.put(f"/v1/certificates/{a['id']}", json=fresh, headers={**customer, "If-Match": seen})
    assert replaced.status_code == 200, replaced.text
    assert replaced.headers["ETag"] != seen
    assert (await client.get(f"/v1/certificates/{a['id']}", headers=customer)).headers["ETag"] == replaced.headers["ETag"]
    again = await client.put(f"/v1/certificates/{a['id']}", json=fresh, headers={**customer, "If-Match": seen})
    assert_problem(again, 412, "precondition_failed")
    r = await client.delete(f"/v1/certificates/{a['id']}", headers={**customer, "If-Match": seen})
    assert_problem(r, 412, "precondition_failed")
    r = await client.delete(f"/v1/certificates/{a['id']}", headers={**customer, "If-Match": replaced.headers["ETag"]})
    assert r.status_code == 204, r.text


async def test_concurrent_certificate_replaces_with_one_tag_one_wins(client, admin, customer_headers, test_ca):
    _server, customer, (a, _b, _c) = await _hosted(client, admin, customer_headers, test_ca)
    seen = (await client.get(f"/v1/certificates/{a['id']}", headers=customer)).headers["ETag"]
    results = await asyncio.gather(*(
        client.put(f"/v1/certificates/{a['id']}", json=upload_body(test_ca.issue(["*.a.test"])),
                   headers={**customer, "If-Match": seen})
        for _ in range(4)
    ))
    assert Counter(r.status_code for r in results) == {200: 1, 412: 3}, [r.text for r in results]
    assert (await client.get(f"/v1/certificates/{a['id']}", headers=customer)).json()["revision"] == 2


async def test_server_writes_honour_if_match(client, admin, test_ca):
    server = await create_server(client, admin)
    got = await client.get(f"/v1/servers/{server['id']}", headers=admin)
    seen = got.headers["ETag"]
    results = await asyncio.gather(
        client.patch(f"/v1/servers/{server['id']}", json={"name": "one"}, headers={**admin, "If-Match": seen}),
        client.patch(f"/v1/servers/{server['id']}", json={"name": "two"}, headers={**admin, "If-Match": seen}),
    )
    assert sorted(r.status_code for r in results) == [200, 412], [r.text for r in results]
    winner = next(r for r in results if r.status_code == 200)
    now = await client.get(f"/v1/servers/{server['id']}", headers=admin)
    assert now.json()["name"] == winner.json()["name"] and now.headers["ETag"] == winner.headers["ETag"]

    platform = await upload(client, admin, test_ca.issue(PLATFORM_NAMES))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": platform["id"]},
                         headers={**admin, "If-Match": seen})
    assert_problem(r, 412, "precondition_failed")
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": platform["id"]},
                         headers={**admin, "If-Match": now.headers["ETag"]})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] != now.headers["ETag"]
    r2 = await client.delete(f"/v1/servers/{server['id']}", headers={**admin, "If-Match": now.headers["ETag"]})
    assert_problem(r2, 412, "precondition_failed")
    r2 = await client.delete(f"/v1/servers/{server['id']}", headers={**admin, "If-Match": "*"})
    assert r2.status_code == 204, r2.text
    r2 = await client.delete(f"/v1/servers/{server['id']}", headers={**admin, "If-Match": "*"})
    assert r2.status_code == 404


async def test_domain_delete_honours_if_match(client, admin, customer_headers, test_ca):
    server = await create_server(client, admin)
    account_id, _customer = await customer_headers()
    created = await client.post("/v1/domains", json={"name": "b.test", "server_id": server["id"],
                                                     "account_id": account_id}, headers=admin)
    seen = created.headers["ETag"]
    assert (await client.get("/v1/domains/b.test", headers=admin)).headers["ETag"] == seen
    await client.delete("/v1/domains/b.test", headers=admin)
    await create_domain(client, admin, "b.test", server["id"], account_id)  # the same name, another domain
    r = await client.delete("/v1/domains/b.test", headers={**admin, "If-Match": seen})
    assert_problem(r, 412, "precondition_failed")
    current = (await client.get("/v1/domains/b.test", headers=admin)).headers["ETag"]
    r = await client.delete("/v1/domains/b.test", headers={**admin, "If-Match": current})
    assert r.status_code == 204, r.text


async def test_taking_a_lock_is_not_a_change(client, admin, customer_headers, test_ca):
    """A bind locks the certificate's row (a no-op UPDATE): the certificate's tag stays, and a bind
    that changes nothing leaves the binding's tag as it was."""
    _server, customer, (a, _b, _c) = await _hosted(client, admin, customer_headers, test_ca)
    cert_tag = (await client.get(f"/v1/certificates/{a['id']}", headers=customer)).headers["ETag"]
    first = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": a["id"]}, headers=customer)
    again = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": a["id"]},
                             headers={**customer, "If-Match": first.headers["ETag"]})
    assert again.status_code == 200 and again.headers["ETag"] == first.headers["ETag"]
    assert (await client.get(f"/v1/certificates/{a['id']}", headers=customer)).headers["ETag"] == cert_tag
