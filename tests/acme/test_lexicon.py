"""The `lexicon` DNS provider kind, for real: dns-lexicon's powerdns provider writes through the
HTTP API of a private PowerDNS, which Pebble queries to validate dns-01.

The only Lexicon provider run here is powerdns (the others need their vendors' accounts); what
they share with it is certpost's side: option checks, sealed credentials, zone discovery,
propagation wait, error mapping and cleanup.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.acme_fixtures import controller_using
from tests.support.api import assert_problem, create_domain, create_server
from tests.support.worker import order_finished, work_until

pytestmark = pytest.mark.acme


@pytest.fixture
def pdns_ready(context, powerdns_pebble):
    with controller_using(context, powerdns_pebble) as pebble:
        yield pebble


def zone_name(prefix: str = "lx") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}.test"


def lexicon_body(pdns, *, token=None, **settings) -> dict:
    return {"name": "pdns", "kind": "lexicon", "settings": {
        "provider": "powerdns", "options": {"pdns_server": pdns.api_url},
        "credentials": {"auth_token": token or pdns.api_key},
        "propagation_nameservers": [pdns.address], **settings}}


async def hosted_zone(client, admin, customer_headers, pdns, *, create=True):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    zone = zone_name()
    if create:
        pdns.create_zone(zone)
    await create_domain(client, admin, zone, server["id"], account_id)
    return zone, server, account_id, customer


async def test_lexicon_provider_credentials_are_write_only_and_options_checked(client, admin, powerdns_server,
                                                                               customer_headers):
    r = await client.post("/v1/dns-providers", json=lexicon_body(powerdns_server), headers=admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "lexicon" and body["secrets_set"] == ["credentials.auth_token"]
    assert body["settings"]["options"] == {"pdns_server": powerdns_server.api_url}
    assert powerdns_server.api_key not in r.text
    for path in ("/v1/dns-providers", f"/v1/dns-providers/{body['id']}"):
        assert powerdns_server.api_key not in (await client.get(path, headers=admin)).text

    def with_settings(**changes):
        payload = lexicon_body(powerdns_server)
        payload["settings"].update(changes)
        return payload

    refused = [
        with_settings(provider="no_such_provider"),
        with_settings(options={"pdns_server": powerdns_server.api_url, "pdns_srever": "typo"}),
        with_settings(options={"pdns_server": powerdns_server.api_url, "auth_token": "in the clear"}),
        with_settings(credentials={"auth_token": "x", "pdns_server": powerdns_server.api_url}),
        with_settings(propagation_nameservers=["ns1.example"]),
    ]
    for payload in refused:
        r = await client.post("/v1/dns-providers", json=payload, headers=admin)
        assert_problem(r, 422, "invalid_dns_provider")
        assert "in the clear" not in r.text
    # A kind's own schema: rfc2136 settings under kind lexicon are a validation error.
    r = await client.post("/v1/dns-providers", json={"name": "x", "kind": "lexicon", "settings": {
        "server": "127.0.0.1", "key_name": "k", "key_secret": "c2VjcmV0"}}, headers=admin)
    assert_problem(r, 422, "validation_error")
    assert_problem(await client.post("/v1/dns-providers", json={"name": "x", "kind": "route66", "settings": {}},
                                     headers=admin), 422, "validation_error")
    # A customer's provider talks to its vendor's fixed API only: no URL, host or file options, no
    # provider that goes where its settings say.
    _account, customer = await customer_headers()
    r = await client.post("/v1/dns-providers", json=lexicon_body(powerdns_server, propagation_nameservers=None),
                          headers=customer)
    assert_problem(r, 422, "dns_target_not_allowed")
    for provider, options, credentials in (("auto", {}, {}), ("ddns", {}, {"auth_token": "t0ken-value"}),
                                           ("cloudflare", {"zone_id": "https://169.254.169.254/"}, {})):
        r = await client.post("/v1/dns-providers", json={"name": "c", "kind": "lexicon", "settings": {
            "provider": provider, "options": options, "credentials": credentials}}, headers=customer)
        assert_problem(r, 422, "dns_target_not_allowed")
    r = await client.post("/v1/dns-providers", json={"name": "cf", "kind": "lexicon", "settings": {
        "provider": "cloudflare", "options": {"zone_id": "023e105f4ecef8ad9ca31a8372d0c353"},
        "credentials": {"auth_token": "t0ken-value"}}}, headers=customer)
    assert r.status_code == 201, r.text
    assert r.json()["account_id"] is not None and "t0ken-value" not in r.text


async def test_lexicon_wildcard_issued_and_bound_no_record_left(client, admin, context, pdns_ready, powerdns_server,
                                                                customer_headers):
    zone, _server, account_id, customer = await hosted_zone(client, admin, customer_headers, powerdns_server)
    provider = (await client.post("/v1/dns-providers", json=lexicon_body(powerdns_server), headers=admin)).json()
    r = await client.post("/v1/certificate-orders", json={
        "domain": zone, "wildcard": True, "challenge": "dns-01", "dns_provider_id": provider["id"],
        "bind": ["webmail", "mail"]}, headers=customer)
    assert r.status_code == 202, r.text
    order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert order["status"] == "valid", order["error"]
    cert = (await client.get(f"/v1/certificates/{order['certificate_id']}", headers=customer)).json()
    assert cert["sans"] == [zone, f"*.{zone}"] and cert["trusted"] and cert["account_id"] == account_id
    assert {b["hostname"] for b in cert["bindings"]} == {f"webmail.{zone}", f"mail.{zone}"}
    assert powerdns_server.txt_records(zone) == []


async def test_lexicon_wrong_key_and_unwritable_zone_fail_at_the_dns_step(client, admin, context, pdns_ready,
                                                                          powerdns_server, customer_headers):
    zone, _server, _account, customer = await hosted_zone(client, admin, customer_headers, powerdns_server)
    wrong = (await client.post("/v1/dns-providers", json=lexicon_body(powerdns_server, token="wrong-key"),
                               headers=admin)).json()
    # A zone this PowerDNS (so this key) does not hold, declared by the operator all the same.
    other = zone_name("lxno")
    unwritable = (await client.post("/v1/dns-providers", json=lexicon_body(powerdns_server, zones=[other]),
                                    headers=admin)).json()
    server = await create_server(client, admin, name="mx2", hostname="mx2.hosting.test")
    account_id, stranger = await customer_headers()
    await create_domain(client, admin, other, server["id"], account_id)

    for headers, domain, provider, code in ((customer, zone, wrong, "dns_auth_rejected"),
                                            (stranger, other, unwritable, "dns_zone_not_found")):
        r = await client.post("/v1/certificate-orders", json={
            "domain": domain, "wildcard": True, "challenge": "dns-01", "dns_provider_id": provider["id"]},
            headers=headers)
        order = await work_until(context, order_finished(client, headers, r.json()["id"]))
        assert order["status"] == "invalid"
        assert order["error"]["step"] == "dns_update" and order["error"]["code"] == code, order["error"]
        assert "wrong-key" not in str(order["error"]) and powerdns_server.api_key not in str(order["error"])
    assert powerdns_server.txt_records(zone) == []
