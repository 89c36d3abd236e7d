"""Servers and domains: registration, validation, deletion rules."""

import pytest

from tests.support.api import assert_problem, create_domain, create_server


async def test_register_server(client, admin):
    server = await create_server(client, admin, hostname="MX1.Hosting.Test.", agent_url="https://mx1.hosting.test:8443/")
    assert server["hostname"] == "mx1.hosting.test"
    assert server["agent_url"] == "https://mx1.hosting.test:8443"
    assert server["mail_certificate_id"] == server["default_certificate_id"]
    cert = (await client.get(f"/v1/certificates/{server['mail_certificate_id']}", headers=admin)).json()
    assert cert["sans"] == ["mx1.hosting.test"] and cert["self_signed"] and cert["key_type"] == "ec-p256"
    assert [b["kind"] for b in cert["bindings"]] == ["server-mail", "server-default"]
    assert server["desired_generation"] == 1
    listed = (await client.get("/v1/servers", headers=admin)).json()["items"]
    assert [s["id"] for s in listed] == [server["id"]]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"hostname": "not a host"}, 422, "invalid_name"),
        ({"software": "exim"}, 422, "validation_error"),
        ({"agent_url": "http://mx1.hosting.test"}, 422, "invalid_agent_url"),
        ({"agent_url": "https://user:pw@mx1.hosting.test"}, 422, "invalid_agent_url"),
        ({"agent_tls_fingerprint": "zz"}, 422, "validation_error"),
    ],
)
async def test_register_server_refusals(client, admin, body, status, code):
    payload = {"name": "mx", "hostname": "mx.hosting.test", "software": "postfix-dovecot", **body}
    assert_problem(await client.post("/v1/servers", json=payload, headers=admin), status, code)
    assert (await client.get("/v1/servers", headers=admin)).json()["items"] == []
    assert (await client.get("/v1/certificates", headers=admin)).json()["items"] == []


async def test_server_name_unique_and_patch(client, admin):
    server = await create_server(client, admin)
    r = await client.post("/v1/servers", json={"name": "mx1", "hostname": "x.hosting.test", "software": "mailenable"}, headers=admin)
    assert_problem(r, 409, "server_exists")
    fp = "AB:" * 31 + "AB"
    r = await client.patch(f"/v1/servers/{server['id']}", json={"agent_url": "https://agent.test:9443", "agent_tls_fingerprint": fp}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["agent_tls_fingerprint"] == "ab" * 32
    assert r.json()["desired_generation"] == server["desired_generation"] + 1


async def test_delete_server_refused_while_domains_use_it(client, admin, customer_headers):
    server = await create_server(client, admin)
    account_id, _ = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    assert_problem(await client.delete(f"/v1/servers/{server['id']}", headers=admin), 409, "server_in_use")
    assert (await client.delete("/v1/domains/a.test", headers=admin)).status_code == 204
    assert (await client.delete(f"/v1/servers/{server['id']}", headers=admin)).status_code == 204
    assert_problem(await client.get(f"/v1/servers/{server['id']}", headers=admin), 404, "not_found")
    # Its self-signed default went with it.
    assert (await client.get("/v1/certificates", headers=admin)).json()["items"] == []


async def test_domains(client, admin, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    domain = await create_domain(client, admin, "Shop.Example.TEST.", server["id"], account_id)
    assert domain["name"] == "shop.example.test"
    assert_problem(await client.post("/v1/domains", json={"name": "shop.example.test", "server_id": server["id"], "account_id": account_id}, headers=admin), 409, "domain_exists")
    assert_problem(await client.post("/v1/domains", json={"name": "bad_name.test", "server_id": server["id"], "account_id": account_id}, headers=admin), 422, "invalid_name")
    assert_problem(await client.post("/v1/domains", json={"name": "b.test", "server_id": "nope", "account_id": account_id}, headers=admin), 422, "unknown_server")
    assert_problem(await client.post("/v1/domains", json={"name": "b.test", "server_id": server["id"], "account_id": "nope"}, headers=admin), 422, "unknown_account")
    assert (await client.get("/v1/domains/SHOP.example.test", headers=customer)).json()["id"] == domain["id"]
    for i in range(3):
        await create_domain(client, admin, f"d{i}.test", server["id"], account_id)
    page = (await client.get("/v1/domains", params={"limit": 2}, headers=customer)).json()
    rest = (await client.get("/v1/domains", params={"limit": 2, "cursor": page["next_cursor"]}, headers=customer)).json()
    assert [d["name"] for d in page["items"] + rest["items"]] == ["d0.test", "d1.test", "d2.test", "shop.example.test"]
    assert_problem(await client.delete("/v1/domains/shop.example.test", headers=customer), 403, "forbidden")


def _long_domain(length: int) -> str:
    labels, rest = [], length - len(".test")
    while rest > 0:
        take = min(63, rest)
        labels.append("a" * take)
        rest -= take + 1
    name = ".".join(labels) + ".test"
    return name if len(name) == length else "b" + name[: length - 1 - len(".test")] + ".test"


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        # webmail.<domain> would be 254+ characters: no certificate can name it, and a wildcard
        # binding would put a name in the server's configuration that the agent refuses whole.
        (_long_domain(246), "at most 245"),
        (_long_domain(253), "at most 245"),
        ("1.2.3.4", "all digits"),
        # Nobody owns a public suffix: no CA issues for it, so it could never be secured.
        ("co.uk", "public suffix"),
        ("com.au", "public suffix"),
    ],
)
async def test_domain_names_whose_service_names_are_not_host_names(client, admin, customer_headers, name, detail):
    server = await create_server(client, admin)
    account_id, _ = await customer_headers()
    r = await client.post("/v1/domains", json={"name": name, "server_id": server["id"], "account_id": account_id}, headers=admin)
    assert_problem(r, 422, "invalid_name")
    assert detail in r.json()["detail"]
    ok = await create_domain(client, admin, _long_domain(245), server["id"], account_id)
    assert len(f"webmail.{ok['name']}") == 253


async def test_server_delete_racing_a_new_domain_is_409_not_a_500(client, admin, customer_headers, context):
    """DELETE /v1/servers/{id} counts the domains, then deletes; a domain committed in between
    made the foreign key refuse the DELETE, which was a 500 (seen on PostgreSQL with a DELETE and
    three POST /v1/domains in parallel). The count is made to miss the domain here."""
    from app.certificates.repository import CertificateRepository
    from app.certificates.service import CertificateService
    from app.servers.repository import ServerRepository
    from app.servers.service import ServerInUse, ServerService

    server = await create_server(client, admin)
    account_id, _ = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    async with context.sessionmaker() as session:
        repo = ServerRepository(session)

        async def count_before_the_domain(_server_id):
            return 0

        repo.count_domains = count_before_the_domain
        service = ServerService(repo, CertificateService(CertificateRepository(session), context.master_key))
        with pytest.raises(ServerInUse):
            await service.delete(server["id"])
        await session.rollback()
    assert (await client.get(f"/v1/servers/{server['id']}", headers=admin)).status_code == 200
