"""A valid customer token sending DNS provider settings that must be refused with a coded 4xx,
and whose secrets must not come back (review of the provider registry, issue 11)."""

from __future__ import annotations

import pytest

from app.acme.providers import parse_nameserver

OVH_KEYS = {"auth_application_key": "appkey-1234", "auth_application_secret": "appsecret-1234",
            "auth_consumer_key": "consumer-1234"}


def _lexicon(settings):
    return {"name": "p", "kind": "lexicon", "settings": settings}


async def test_a_url_hidden_among_the_credentials_is_refused_for_a_customer(client, admin, customer_headers):
    _account, customer = await customer_headers()
    hidden = {"provider": "ovh", "credentials": {**OVH_KEYS, "auth_entrypoint": "http://169.254.169.254/"}}
    r = await client.post("/v1/dns-providers", json=_lexicon(hidden), headers=customer)
    assert r.status_code == 422 and r.json()["code"] == "dns_target_not_allowed", r.text
    for value in (*OVH_KEYS.values(), "169.254.169.254"):
        assert value not in r.text
    # A vendor endpoint named as such stays allowed, wherever it is given.
    named = {"provider": "ovh", "credentials": {**OVH_KEYS, "auth_entrypoint": "ovh-eu"}}
    r = await client.post("/v1/dns-providers", json=_lexicon(named), headers=customer)
    assert r.status_code == 201, r.text
    assert "ovh-eu" not in r.text and "credentials.auth_entrypoint" in r.json()["secrets_set"]
    # The platform's own providers may point anywhere (the operator's choice).
    r = await client.post("/v1/dns-providers", json=_lexicon(hidden), headers=admin)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("value", [123456789, "123456789"])
async def test_a_numeric_api_key_given_as_an_option_is_refused_not_echoed(client, customer_headers, value):
    _account, customer = await customer_headers()
    r = await client.post("/v1/dns-providers", json=_lexicon({"provider": "cloudflare",
                                                              "options": {"auth_token": value}}), headers=customer)
    assert r.status_code == 422 and r.json()["code"] == "invalid_dns_provider", r.text
    assert "123456789" not in r.text
    listed = await client.get("/v1/dns-providers", headers=customer)
    assert "123456789" not in listed.text and listed.json()["items"] == []


async def test_a_boolean_flag_named_like_a_key_is_an_option(client, admin):
    r = await client.post("/v1/dns-providers", json=_lexicon({
        "provider": "transip", "options": {"auth_username": "u", "auth_key_is_global": True},
        "credentials": {"auth_api_key": "-----BEGIN PRIVATE KEY-----"}}), headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["settings"]["options"]["auth_key_is_global"] is True


async def test_option_and_credential_values_are_bounded(client, customer_headers):
    _account, customer = await customer_headers()
    for settings in ({"provider": "cloudflare", "options": {"zone_id": "x" * 2049}},
                     {"provider": "cloudflare", "credentials": {"auth_token": "x" * 16385}}):
        r = await client.post("/v1/dns-providers", json=_lexicon(settings), headers=customer)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
        assert "x" * 100 not in r.text


@pytest.mark.parametrize("text", ["[2001:db8::1", "192.0.2.1:abc", "192.0.2.1:", "[2001:db8::1]x", "[2001:db8::1]:"])
async def test_malformed_propagation_nameservers_are_invalid_not_guessed(client, admin, text):
    with pytest.raises(ValueError):
        parse_nameserver(text)
    r = await client.post("/v1/dns-providers", json=_lexicon({"provider": "cloudflare",
                                                              "propagation_nameservers": [text]}), headers=admin)
    assert r.status_code == 422 and r.json()["code"] == "invalid_dns_provider", r.text
    assert "int()" not in r.json()["detail"]


def test_well_formed_nameservers_still_parse():
    assert parse_nameserver("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_nameserver("192.0.2.1:5353") == ("192.0.2.1", 5353)
    assert parse_nameserver("2001:db8::1") == ("2001:db8::1", 53)
    assert parse_nameserver("[2001:db8::1]") == ("2001:db8::1", 53)
    assert parse_nameserver("[2001:db8::1]:5353") == ("2001:db8::1", 5353)


@pytest.mark.parametrize(("provider", "option", "value"), [
    ("googleclouddns", "auth_service_account_info", "file::/etc/certpost/master.key"),
    ("conoha", "auth_region", "x@127.0.0.1:8081/#"),
    ("ovh", "auth_entrypoint", "127.0.0.1:8081"),
])
@pytest.mark.parametrize("where", ["options", "credentials"])
async def test_values_that_read_files_or_rewrite_the_vendors_url_are_refused_for_a_customer(
        client, admin, customer_headers, provider, option, value, where):
    """googleclouddns opens a `file::` path on the controller; conoha pastes its region into
    `https://identity.{region}.conoha.io` (so `x@127.0.0.1:8081/#` makes the host 127.0.0.1)."""
    _account, customer = await customer_headers()
    settings = {"provider": provider, where: {option: value}}
    r = await client.post("/v1/dns-providers", json=_lexicon(settings), headers=customer)
    assert r.status_code == 422 and r.json()["code"] == "dns_target_not_allowed", r.text
    assert value not in r.text
    # A region or entry point by name is fine; the platform may do anything.
    if option in ("auth_region", "auth_entrypoint"):
        r = await client.post("/v1/dns-providers", json=_lexicon({"provider": provider, where: {option: "tyo1"}}),
                              headers=customer)
        assert r.status_code == 201, r.text
    r = await client.post("/v1/dns-providers", json=_lexicon(settings), headers=admin)
    assert r.status_code == 201, r.text
