"""The registry of DNS provider kinds (app/acme/providers), the delegation routing rule, Lexicon's
error mapping, and a provider row written before kinds were a registry."""

from __future__ import annotations

import json

import pytest

from app.acme.dns import (
    DnsAuthRejected,
    DnsUnreachable,
    DnsUpdateFailed,
    DnsZoneNotFound,
    Rfc2136Provider,
)
from app.acme.dns.delegation import provider_for
from app.acme.dns.lexicon import LexiconProvider
from app.acme.models import DnsProvider
from app.acme.providers import KINDS
from app.db import new_id
from tests.support.acme_fixtures import controller_using
from tests.support.api import create_domain, create_server
from tests.support.ports import free_port
from tests.support.worker import order_finished, work_until


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_splits_its_secrets_off(name):
    kind = KINDS[name]
    prepared = kind.prepare(kind.settings_model.model_validate(kind.example))
    public = kind.public(prepared.settings).model_dump_json()
    assert prepared.secrets and kind.secret_names(prepared.settings)
    for value in json.dumps(prepared.secrets).split('"'):
        if len(value) > 8:
            assert value not in public, value


def _rfc2136(zones=()):
    provider = Rfc2136Provider("127.0.0.1", key_name="k", key_secret="c2VjcmV0")
    provider.zones = tuple(zones)
    return provider


def test_delegated_target_goes_to_the_provider_declaring_the_longest_zone():
    default, outer, inner = _rfc2136(), _rfc2136(["example.net"]), _rfc2136(["acme.example.net"])
    assert provider_for("x.acme.example.net", default, [outer, inner]) is inner
    assert provider_for("x.example.net", default, [outer, inner]) is outer
    assert provider_for("example.net", default, [outer, inner]) is outer
    assert provider_for("x.badexample.net", default, [outer, inner]) is default  # a label boundary, not a suffix
    assert provider_for("x.example.org", default, [outer]) is default


def test_lexicon_errors_are_coded_and_carry_no_credential():
    import requests

    port = free_port()
    closed = LexiconProvider("powerdns", {"pdns_server": f"http://127.0.0.1:{port}"},
                             {"auth_token": "s3cret-token-value"}, zone="example.test")
    with pytest.raises(DnsUnreachable):
        closed.add_txt("_acme-challenge.example.test", "v")

    def http_error(status):
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(f"{status} for url https://api.example/?key=s3cret-token-value", response=response)

    for status, cls in ((401, DnsAuthRejected), (403, DnsAuthRejected), (404, DnsZoneNotFound), (500, DnsUpdateFailed)):
        mapped = closed._mapped(http_error(status), "lexicon powerdns", "example.test", "x.example.test")
        assert isinstance(mapped, cls) and "s3cret" not in mapped.detail
    other = closed._mapped(RuntimeError("bad token s3cret-token-value"), "lexicon powerdns", "example.test", "x")
    assert isinstance(other, DnsUpdateFailed) and "s3cret" not in other.detail and "***" in other.detail
    assert "s3cret" not in repr(closed)


@pytest.mark.acme
async def test_a_provider_row_from_before_the_registry_still_works(client, admin, context, pebble_server, bind_server,
                                                                   customer_headers):
    """The settings JSON an rfc2136 row held at migration 0011, written as the old code wrote it: it
    reads back through the kind's public schema and issues; no migration is needed for kinds."""
    row_id = new_id()
    sealed = context.master_key.seal(json.dumps({"key_secret": bind_server.key_secret}).encode(), row_id)
    settings = {"server": bind_server.host, "port": bind_server.port, "key_name": bind_server.key_name.rstrip("."),
                "key_algorithm": "hmac-sha256", "zone": None, "propagation_nameservers": None}
    async with context.sessionmaker() as session:
        session.add(DnsProvider(id=row_id, account_id=None, name="old", kind="rfc2136", settings=settings,
                                secret_ciphertext=sealed.ciphertext, secret_wrapped=sealed.wrapped_key,
                                master_key_id=sealed.master_key_id))
        await session.commit()
    body = (await client.get(f"/v1/dns-providers/{row_id}", headers=admin)).json()
    assert body["kind"] == "rfc2136" and body["secrets_set"] == ["key_secret"] and body["settings"]["zones"] is None
    assert bind_server.key_secret not in json.dumps(body)

    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "z03.test", server["id"], account_id)
    with controller_using(context, pebble_server):
        r = await client.post("/v1/certificate-orders", json={
            "domain": "z03.test", "wildcard": True, "challenge": "dns-01", "dns_provider_id": row_id}, headers=customer)
        order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert order["status"] == "valid", order["error"]


def test_customer_lexicon_providers_reach_their_vendor_only():
    from app.kit.lexicon import customer_refusal

    assert customer_refusal("cloudflare", {"zone_id": "abc", "auth_token": "x"}) is None
    assert customer_refusal("ovh", {"auth_entrypoint": "ovh-eu"}) is None
    for provider, options in (("auto", {}), ("ddns", {}), ("localzone", {}),
                              ("powerdns", {"pdns_server": "https://pdns.example.net"}),
                              ("plesk", {"plesk_server": "10.0.0.1"}), ("infoblox", {"ib_host": "ib.internal"}),
                              ("oci", {"auth_key_file": "/etc/shadow"}),
                              ("ovh", {"auth_entrypoint": "http://169.254.169.254/"}),
                              ("gandi", {"api_protocol": "http://127.0.0.1/"})):
        assert customer_refusal(provider, options), (provider, options)
