"""A server with a TLS front (HAProxy for Dovecot's implicit-TLS ports): what the controller says.

The front is a server attribute an administrator sets (``tls_front``, migration 0012_tls_front);
with it per-domain mail certificates stay on offer past Dovecot's capacity, STARTTLS (143, 110)
presents the server-wide certificate, and clients are pointed at the implicit-TLS ports.
"""

import pytest

from app.servers.software import mail_ports
from tests.support.api import assert_problem, create_domain, create_server, upload


@pytest.fixture
async def fronted(client, admin, customer_headers):
    server = await create_server(client, admin, tls_front="haproxy")
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    return server, account_id, customer


async def bind_mail(client, headers, cert_id, domain="a.test"):
    return await client.put(f"/v1/domains/{domain}/bindings/mail", json={"certificate_id": cert_id}, headers=headers)


def test_ports_with_and_without_a_front():
    front = {p.port: (p.daemon, p.per_domain) for p in mail_ports("postfix-dovecot", "haproxy")}
    assert front == {
        25: ("postfix", True), 587: ("postfix", True), 465: ("postfix", True),
        143: ("dovecot", False), 993: ("haproxy", True), 110: ("dovecot", False), 995: ("haproxy", True),
    }
    plain = {p.port: (p.daemon, p.per_domain) for p in mail_ports("postfix-dovecot", None)}
    assert plain[143] == plain[993] == ("dovecot", True)
    assert all(not p.per_domain for p in mail_ports("qmail-courier", None))


async def test_front_only_in_front_of_dovecot(client, admin):
    body = {"name": "mx2", "hostname": "mx2.hosting.test", "software": "postfix-courier", "tls_front": "haproxy"}
    assert_problem(await client.post("/v1/servers", json=body, headers=admin), 422, "rule_violation")
    assert_problem(await client.post("/v1/servers", json={**body, "tls_front": "nginx"}, headers=admin),
                   422, "validation_error")
    server = await create_server(client, admin, software="postfix-courier")
    r = await client.patch(f"/v1/servers/{server['id']}", json={"tls_front": "haproxy"}, headers=admin)
    assert_problem(r, 422, "rule_violation")
    assert (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["tls_front"] is None


async def test_front_is_set_and_removed_without_a_new_generation(client, admin, fronted):
    server, _, _ = fronted
    assert server["tls_front"] == "haproxy"
    server = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
    r = await client.patch(f"/v1/servers/{server['id']}", json={"tls_front": None}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["tls_front"] is None
    assert r.json()["desired_generation"] == server["desired_generation"]  # nothing served changed


async def test_capacity_warning_only_without_a_front(client, admin, context, test_ca, fronted):
    server, account_id, customer = fronted
    await create_domain(client, admin, "b.test", server["id"], account_id)
    saved = context.settings.dovecot_capacity
    context.settings.dovecot_capacity = 1
    try:
        for domain in ("a.test", "b.test"):
            cert = await upload(client, customer, test_ca.issue([f"mail.{domain}"]))
            assert (await bind_mail(client, customer, cert["id"], domain)).status_code == 201
        body = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
        assert body["per_domain_mail_certificates"] == 2 and body["warnings"] == []
        status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
        assert "mail_certificates_over_capacity" not in [w["code"] for w in status["warnings"]]
        await client.patch(f"/v1/servers/{server['id']}", json={"tls_front": None}, headers=admin)
        body = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
        assert [w["code"] for w in body["warnings"]] == ["mail_certificates_over_capacity"]
    finally:
        context.settings.dovecot_capacity = saved


async def test_binding_and_status_say_which_port_shows_what(client, admin, test_ca, fronted):
    server, _, customer = fronted
    cert = await upload(client, customer, test_ca.issue(["mail.a.test"]))
    r = await bind_mail(client, customer, cert["id"])
    assert r.status_code == 201, r.text
    warning = next(w for w in r.json()["warnings"] if w["code"] == "starttls_server_wide")
    assert "143, 110" in warning["message"] and "465, 993, 995" in warning["message"]
    status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()["mail"]
    ports = {p["port"]: p for p in status["ports"]}
    assert (ports[993]["daemon"], ports[993]["source"], ports[993]["client_warning"]) == ("haproxy", "binding", False)
    assert (ports[995]["daemon"], ports[995]["source"]) == ("haproxy", "binding")
    assert (ports[143]["daemon"], ports[143]["source"]) == ("dovecot", "server-default")
    # The server-wide certificate is for the server's host name, not mail.a.test: a client warns on 143.
    assert ports[143]["reasons"] == ["hostname_not_covered", "self_signed"] and ports[110]["client_warning"]
    assert status["recommended_client_hostname"] == "mail.a.test"
    assert status["recommended_ports"] == [465, 993, 995]
    row = (await client.get("/v1/domain-tls", headers=customer)).json()["items"][0]
    assert row["mail"]["recommended_ports"] == [465, 993, 995]  # the list says the same
    # Without the front Dovecot shows the binding on every port, and the binding has no such warning.
    await client.patch(f"/v1/servers/{server['id']}", json={"tls_front": None}, headers=admin)
    status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()["mail"]
    assert {p["port"]: p["source"] for p in status["ports"]}[143] == "binding"
    r = await bind_mail(client, customer, cert["id"])
    assert "starttls_server_wide" not in [w["code"] for w in r.json()["warnings"]]
