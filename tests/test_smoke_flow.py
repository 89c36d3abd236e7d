"""The README tour, through the public API: server, account, domain, certificate, bindings, status."""

from tests.support.api import create_domain, create_server, upload


async def test_tour(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin)
    assert server["capabilities"]["per_domain_mail"] is True
    account_id, customer = await customer_headers("acme-hosting")
    await create_domain(client, admin, "Example.TEST.", server["id"], account_id)

    status = (await client.get("/v1/domains/example.test/tls", headers=customer)).json()
    assert status["webmail"]["client_warning"] is True
    assert set(status["webmail"]["reasons"]) == {"hostname_not_covered", "self_signed"}
    assert status["mail"]["recommended_client_hostname"] is None

    wildcard = test_ca.issue(["example.test", "*.example.test"])
    cert = await upload(client, customer, wildcard)
    assert cert["trusted"] is True and cert["account_id"] == account_id
    for service in ("webmail", "mail"):
        r = await client.put(f"/v1/domains/example.test/bindings/{service}", json={"certificate_id": cert["id"]}, headers=customer)
        assert r.status_code == 201, r.text
    codes = [w["code"] for w in r.json()["warnings"]]
    assert codes == ["server_certificate_untrusted"]

    status = (await client.get("/v1/domains/example.test/tls", headers=customer)).json()
    assert status["webmail"]["client_warning"] is False
    assert status["mail"]["client_warning"] is False
    assert status["mail"]["recommended_client_hostname"] == "mail.example.test"
    assert status["deployment"]["desired_generation"] > status["deployment"]["applied_generation"]
