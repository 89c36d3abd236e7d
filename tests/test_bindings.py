"""Binding rules and the TLS status report (shared/guide/domain.md)."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api import assert_problem, create_domain, create_server, upload
from tests.support.pki import self_signed


@pytest.fixture
async def hosted(client, admin, customer_headers):
    """A postfix-dovecot server with domain a.test owned by a customer."""
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    return server, account_id, customer


async def bind(client, headers, service, cert_id, domain="a.test"):
    return await client.put(f"/v1/domains/{domain}/bindings/{service}", json={"certificate_id": cert_id}, headers=headers)


@pytest.mark.parametrize(
    ("sans", "webmail", "mail"),
    [
        (["*.a.test"], True, True),
        (["a.test", "*.a.test"], True, True),
        (["webmail.a.test", "mail.a.test"], True, True),
        (["webmail.a.test"], True, False),
        (["a.test"], False, False),  # the base name is not a subdomain
        (["*.mail.a.test"], False, False),  # one label only
        (["*.b.test"], False, False),
    ],
)
async def test_coverage_rule(client, test_ca, hosted, sans, webmail, mail):
    _server, _account, customer = hosted
    cert = await upload(client, customer, test_ca.issue(sans))
    for service, ok in (("webmail", webmail), ("mail", mail)):
        r = await bind(client, customer, service, cert["id"])
        if ok:
            assert r.status_code == 201, r.text
        else:
            body = assert_problem(r, 422, "hostname_not_covered")
            assert body["hostname"] == f"{service}.a.test"


async def test_idn_domain_compares_as_a_labels(client, admin, test_ca, hosted):
    server, account_id, customer = hosted
    domain = await create_domain(client, admin, "Bücher.TEST", server["id"], account_id)
    assert domain["name"] == "xn--bcher-kva.test"
    cert = await upload(client, customer, test_ca.issue(["*.xn--bcher-kva.test"]))
    r = await bind(client, customer, "mail", cert["id"], domain="bücher.test")
    assert r.status_code == 201, r.text
    assert r.json()["hostname"] == "mail.xn--bcher-kva.test"


async def test_expired_and_not_yet_valid_refused(client, test_ca, hosted):
    _server, _account, customer = hosted
    now = datetime.now(UTC)
    expired = await upload(client, customer, test_ca.issue(["*.a.test"], not_before=now - timedelta(days=100), not_after=now - timedelta(days=1)))
    future = await upload(client, customer, test_ca.issue(["*.a.test"], not_before=now + timedelta(days=2), not_after=now + timedelta(days=90)))
    assert_problem(await bind(client, customer, "webmail", expired["id"]), 422, "certificate_expired")
    assert_problem(await bind(client, customer, "mail", future["id"]), 422, "certificate_not_yet_valid")


async def test_warnings(client, admin, test_ca, untrusted_ca, hosted):
    server, _account, customer = hosted
    expiring = await upload(client, customer, test_ca.issue(["*.a.test"], days=10))
    r = await bind(client, customer, "webmail", expiring["id"])
    assert [w["code"] for w in r.json()["warnings"]] == ["certificate_expiring"]
    untrusted = await upload(client, customer, untrusted_ca.issue(["*.a.test"]))
    r = await bind(client, customer, "webmail", untrusted["id"])
    assert [w["code"] for w in r.json()["warnings"]] == ["certificate_untrusted"]
    own = await upload(client, customer, self_signed(["*.a.test"]))
    r = await bind(client, customer, "webmail", own["id"])
    assert [w["code"] for w in r.json()["warnings"]] == ["self_signed"]
    for w in r.json()["warnings"]:
        assert w["message"]

    good = await upload(client, customer, test_ca.issue(["*.a.test"]))
    r = await bind(client, customer, "mail", good["id"])
    assert [w["code"] for w in r.json()["warnings"]] == ["server_certificate_untrusted"]
    server_cert = await upload(client, admin, test_ca.issue(["mx1.hosting.test"]))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": server_cert["id"]}, headers=admin)
    assert r.status_code == 200, r.text
    r = await bind(client, customer, "mail", good["id"])
    assert r.json()["warnings"] == []


@pytest.mark.parametrize("software", ["qmail-courier"])
async def test_sni_unsupported(client, admin, test_ca, customer_headers, software):
    server = await create_server(client, admin, name="q1", hostname="q1.hosting.test", software=software)
    assert server["capabilities"]["per_domain_mail"] is False
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    body = assert_problem(await bind(client, customer, "mail", cert["id"]), 409, "sni_unsupported")
    assert "qmail" in body["advice"] and "q1.hosting.test" in body["advice"]
    assert body["recommended_client_hostname"] == "q1.hosting.test"
    assert (await bind(client, customer, "webmail", cert["id"])).status_code == 201


@pytest.mark.parametrize("software", ["postfix-courier", "mailenable"])
async def test_sni_capable_software(client, admin, test_ca, customer_headers, software):
    server = await create_server(client, admin, name="s", hostname="s.hosting.test", software=software)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    assert (await bind(client, customer, "mail", cert["id"])).status_code == 201


async def test_get_and_delete_bindings(client, test_ca, hosted):
    server, _account, customer = hosted
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    await bind(client, customer, "webmail", cert["id"])
    body = (await client.get("/v1/domains/a.test/bindings", headers=customer)).json()
    assert body["webmail"]["source"] == "binding" and body["webmail"]["certificate_id"] == cert["id"]
    assert body["mail"]["source"] == "server-default" and body["mail"]["certificate_id"] == server["mail_certificate_id"]
    assert (await client.delete("/v1/domains/a.test/bindings/webmail", headers=customer)).status_code == 204
    body = (await client.get("/v1/domains/a.test/bindings", headers=customer)).json()
    assert body["webmail"]["source"] == "server-default" and body["webmail"]["certificate_id"] == server["default_certificate_id"]
    assert_problem(await client.delete("/v1/domains/a.test/bindings/webmail", headers=customer), 404, "not_found")
    assert_problem(await client.put("/v1/domains/a.test/bindings/imap", json={"certificate_id": cert["id"]}, headers=customer), 422, "validation_error")


async def test_generation_bumps_with_every_change(client, admin, test_ca, hosted):
    server, _account, customer = hosted

    async def generation():
        return (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"]

    start = await generation()
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    await bind(client, customer, "webmail", cert["id"])
    assert await generation() == start + 1
    await bind(client, customer, "webmail", cert["id"])  # same binding again: nothing changes
    assert await generation() == start + 1
    await client.delete("/v1/domains/a.test/bindings/webmail", headers=customer)
    assert await generation() == start + 2
    r = await bind(client, customer, "webmail", "00000000-0000-0000-0000-000000000000")
    assert_problem(r, 404, "not_found")
    assert await generation() == start + 2  # a refused request changes nothing


async def test_tls_status_report(client, admin, test_ca, untrusted_ca, hosted):
    server, _account, customer = hosted
    status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
    assert status["webmail"]["hostname"] == "webmail.a.test" and status["webmail"]["source"] == "server-default"
    assert status["mail"]["hostname"] == "mail.a.test"
    assert set(status["mail"]["reasons"]) == {"hostname_not_covered", "self_signed"}
    assert status["mail"]["recommended_client_hostname"] is None
    assert status["mail"]["recommendation_reason"] == "server_certificate_untrusted"
    assert status["deployment"]["up_to_date"] is False
    # Nothing bound: the server's default is presented for autoconfig.a.test/autodiscover.a.test too.
    assert [w["code"] for w in status["warnings"]] == ["no_agent", "autoconfig_names_not_covered"]
    assert status["autoconfig"]["hostname"] == "mx1.hosting.test"  # nothing is warning-free: the host name
    r = await client.patch(f"/v1/servers/{server['id']}", json={"agent_url": "https://mx1.hosting.test:8443"}, headers=admin)
    assert r.status_code == 200
    status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
    assert [w["code"] for w in status["warnings"]] == ["not_yet_deployed", "autoconfig_names_not_covered"]

    # A trusted server-wide certificate: mail clients should use the server's host name.
    server_cert = await upload(client, admin, test_ca.issue(["mx1.hosting.test"]))
    await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": server_cert["id"]}, headers=admin)
    status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
    assert status["mail"]["client_warning"] is True and status["mail"]["reasons"] == ["hostname_not_covered"]
    assert status["mail"]["recommended_client_hostname"] == "mx1.hosting.test"

    untrusted = await upload(client, customer, untrusted_ca.issue(["*.a.test"]))
    await bind(client, customer, "webmail", untrusted["id"])
    good = await upload(client, customer, test_ca.issue(["*.a.test"], days=20))
    await bind(client, customer, "mail", good["id"])
    status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
    assert status["webmail"]["source"] == "binding" and status["webmail"]["reasons"] == ["certificate_untrusted"]
    assert status["webmail"]["covers_hostname"] is True and status["webmail"]["trusted"] is False
    mail = status["mail"]
    assert mail["client_warning"] is False and mail["trusted"] is True and mail["covers_hostname"] is True
    assert mail["notices"] == ["certificate_expiring"]
    assert mail["recommended_client_hostname"] == "mail.a.test"
    assert mail["certificate"]["fingerprint_sha256"] == good["fingerprint_sha256"]
    # The webmail wildcard covers autoconfig.a.test and autodiscover.a.test: no warning about them.
    assert status["autoconfig"]["hostname"] == "mail.a.test" and status["autoconfig"]["uncovered_names"] == []
    assert "autoconfig_names_not_covered" not in [w["code"] for w in status["warnings"]]


async def test_server_mail_certificate_rules(client, admin, test_ca, hosted):
    server, _account, _customer = hosted
    wrong = await upload(client, admin, test_ca.issue(["mx2.hosting.test"]))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": wrong["id"]}, headers=admin)
    assert_problem(r, 422, "hostname_not_covered")
    wildcard = await upload(client, admin, test_ca.issue(["*.hosting.test"], days=5))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": wildcard["id"]}, headers=admin)
    assert r.status_code == 200, r.text
    assert [w["code"] for w in r.json()["certificate_warnings"]] == ["certificate_expiring"]
    assert r.json()["mail_certificate_id"] == wildcard["id"]


async def test_capacity_warning_on_server_and_tls_status(client, admin, context, test_ca, hosted):
    server, account_id, customer = hosted
    await create_domain(client, admin, "b.test", server["id"], account_id)
    saved = context.settings.dovecot_capacity
    context.settings.dovecot_capacity = 1
    try:
        for domain in ("a.test", "b.test"):
            cert = await upload(client, customer, test_ca.issue([f"*.{domain}"]))
            assert (await bind(client, customer, "mail", cert["id"], domain=domain)).status_code == 201
        body = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
        assert body["per_domain_mail_certificates"] == 2
        assert [w["code"] for w in body["warnings"]] == ["mail_certificates_over_capacity"]
        status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
        assert "mail_certificates_over_capacity" in [w["code"] for w in status["warnings"]]
    finally:
        context.settings.dovecot_capacity = saved


async def test_an_order_that_binds_mail_is_refused_with_the_same_problem(client, admin, customer_headers):
    """The ACME order's bind check and the bind share one rule and one error class."""
    server = await create_server(client, admin, name="q1", hostname="q1.hosting.test", software="qmail-courier",
                                 agent_url="https://q1.hosting.test:8750", agent_tls_fingerprint="ab" * 32)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    r = await client.post("/v1/certificate-orders", json={"names": ["mail.a.test"], "challenge": "http-01", "bind": ["mail"]},
                          headers=customer)
    body = assert_problem(r, 409, "sni_unsupported")
    assert body["recommended_client_hostname"] == "q1.hosting.test" and "qmail" in body["advice"]
