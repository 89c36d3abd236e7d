"""Conditional GETs (app/conditional.py): a panel polling the TLS status or a list gets 304 with no
body while the answer is the same bytes, and the new answer as soon as anything in it changed."""

from __future__ import annotations

from tests.support.api import create_domain, create_server, upload


async def _hosting(client, admin, customer_headers, test_ca):
    server = await create_server(client, admin)
    account, customer = await customer_headers("a")
    other_account, other = await customer_headers("b")
    await create_domain(client, admin, "a.example", server["id"], account)
    await create_domain(client, admin, "b.example", server["id"], other_account)
    cert = await upload(client, customer, test_ca.issue(["webmail.a.example", "mail.a.example"]))
    return server, customer, other, cert


async def test_the_tls_status_is_304_until_it_changes(client, admin, customer_headers, test_ca):
    _server, customer, _other, cert = await _hosting(client, admin, customer_headers, test_ca)
    first = await client.get("/v1/domains/a.example/tls", headers=customer)
    tag = first.headers["etag"]
    assert first.status_code == 200 and tag.startswith('"') and first.headers["cache-control"] == "private, no-cache"

    same = await client.get("/v1/domains/a.example/tls", headers={**customer, "If-None-Match": tag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == tag
    assert "content-type" not in same.headers
    weak = await client.get("/v1/domains/a.example/tls", headers={**customer, "If-None-Match": f'"x", W/{tag}'})
    assert weak.status_code == 304
    star = await client.get("/v1/domains/a.example/tls", headers={**customer, "If-None-Match": "*"})
    assert star.status_code == 304

    bound = await client.put("/v1/domains/a.example/bindings/webmail", json={"certificate_id": cert["id"]},
                             headers=customer)
    assert bound.status_code == 201, bound.text
    changed = await client.get("/v1/domains/a.example/tls", headers={**customer, "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["webmail"]["certificate"]["id"] == cert["id"]


async def test_a_list_page_is_304_and_each_token_has_its_own_answer(client, admin, customer_headers, test_ca):
    _server, customer, other, _cert = await _hosting(client, admin, customer_headers, test_ca)
    mine = await client.get("/v1/domain-tls", headers=customer)
    theirs = await client.get("/v1/domain-tls", headers=other)
    assert [r["domain"] for r in mine.json()["items"]] == ["a.example"]
    assert mine.headers["etag"] != theirs.headers["etag"]
    # Another account's tag names another body: it is no 304 for this one.
    crossed = await client.get("/v1/domain-tls", headers={**customer, "If-None-Match": theirs.headers["etag"]})
    assert crossed.status_code == 200 and crossed.json() == mine.json()
    again = await client.get("/v1/domain-tls", headers={**customer, "If-None-Match": mine.headers["etag"]})
    assert again.status_code == 304


async def test_a_resource_keeps_its_version_tag_and_is_never_304(client, admin, customer_headers, test_ca):
    _server, customer, _other, cert = await _hosting(client, admin, customer_headers, test_ca)
    first = await client.get(f"/v1/certificates/{cert['id']}", headers=customer)
    tag = first.headers["etag"]
    # The version tag is the one If-Match takes; what the GET derives (usages, trust) is not in
    # it, so it never answers If-None-Match.
    again = await client.get(f"/v1/certificates/{cert['id']}", headers={**customer, "If-None-Match": tag})
    assert again.status_code == 200 and again.headers["etag"] == tag and again.json() == first.json()


async def test_errors_and_exports_are_not_tagged(client, admin, customer_headers, test_ca):
    server, customer, _other, _cert = await _hosting(client, admin, customer_headers, test_ca)
    missing = await client.get("/v1/domains/nope.example/tls", headers={**customer, "If-None-Match": "*"})
    assert missing.status_code == 404 and "etag" not in missing.headers
    export = await client.get(f"/v1/servers/{server['id']}/domain-tls.ndjson", headers=admin)
    assert export.status_code == 200 and "etag" not in export.headers and export.text.count("\n") == 2
