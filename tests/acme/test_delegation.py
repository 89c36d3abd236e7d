"""Delegated dns-01 against a real BIND and Pebble: `_acme-challenge.dlga.test` is a CNAME chain
into `dlgb.test`; the TSIG key may write TXT records in `dlgb.test` only (update-policy), and
`dlga.test` not at all. The order names the provider for `dlga.test`; certpost follows the chain,
writes with the provider that declares `dlgb.test`, waits on its servers, and Pebble (following
the same CNAMEs) issues the wildcard. A loop and a dangling CNAME fail at the DNS step, coded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from app.acme.dns import query_txt
from tests.support.acme_fixtures import controller_using
from tests.support.api import create_domain, create_server
from tests.support.bind import TSIG_KEY_NAME, BindServer, start_bind, start_resolver, stop_bind
from tests.support.pebble import PebbleServer, start_pebble, stop_pebble
from tests.support.worker import order_finished, work_until

pytestmark = pytest.mark.acme

TARGET = "a.acme.dlgb.test"
RECORDS = {"dlga.test": [
    "_acme-challenge IN CNAME hop.dlga.test.",
    f"hop IN CNAME {TARGET}.",
    "_acme-challenge.loop IN CNAME loop2.dlga.test.",
    "loop2 IN CNAME _acme-challenge.loop.dlga.test.",
    "_acme-challenge.gone IN CNAME nothing.nowhere.test.",
    # Nine CNAMEs, one more than certpost follows, ending in the writable zone.
    "_acme-challenge.long IN CNAME l1.dlga.test.",
    *(f"l{i} IN CNAME l{i + 1}.dlga.test." for i in range(1, 8)),
    f"l8 IN CNAME long.{TARGET}.",
], "dlgb.test": ["_acme-challenge.www IN CNAME inner.dlgb.test."]}


@pytest.fixture(scope="module")
def delegation_bind() -> Iterator[BindServer]:
    server = start_bind(["dlgb.test"], readonly_zones=["dlga.test"], records=RECORDS,
                        policies={"dlgb.test": f'update-policy {{ grant "{TSIG_KEY_NAME}" zonesub TXT; }};'})
    yield server
    stop_bind(server)


@pytest.fixture(scope="module")
def delegation_pebble(delegation_bind) -> Iterator[PebbleServer]:
    """Pebble asks a recursive resolver in front of the authoritative BIND, as a CA does: the
    authoritative server alone answers the CNAMEs of dlga.test but not the TXT in dlgb.test."""
    resolver = start_resolver(delegation_bind)
    try:
        server = start_pebble(resolver.address)
        yield server
        stop_pebble(server)
    finally:
        stop_bind(resolver)


@pytest.fixture
def ready(context, delegation_pebble):
    delegation_pebble.ensure_alive()
    with controller_using(context, delegation_pebble) as pebble:
        yield pebble


async def provider(client, admin, bind, **settings) -> str:
    r = await client.post("/v1/dns-providers", json={"name": "bind", "kind": "rfc2136", "settings": {
        "server": bind.host, "port": bind.port, "key_name": bind.key_name, "key_secret": bind.key_secret,
        **settings}}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def order(client, context, headers, body) -> dict:
    r = await client.post("/v1/certificate-orders", json={"challenge": "dns-01", **body}, headers=headers)
    assert r.status_code == 202, r.text
    return await work_until(context, order_finished(client, headers, r.json()["id"]))


async def test_wildcard_through_a_cname_into_the_only_writable_zone(client, admin, context, ready, delegation_bind,
                                                                     customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "dlga.test", server["id"], account_id)
    zone_a = await provider(client, admin, delegation_bind, zone="dlga.test")
    body = {"domain": "dlga.test", "wildcard": True, "dns_provider_id": zone_a, "bind": ["webmail", "mail"]}

    # Without a provider declaring dlgb.test, the platform's provider the order names does not
    # follow the account's CNAME out of its own zone: refused before anything is written.
    failed = await order(client, context, customer, body)
    assert failed["status"] == "invalid" and failed["error"]["step"] == "dns_update"
    assert failed["error"]["code"] == "dns_cname_target_not_allowed", failed["error"]

    zone_b = await provider(client, admin, delegation_bind, zones=["dlgb.test"])
    assert (await client.get(f"/v1/dns-providers/{zone_b}", headers=admin)).json()["settings"]["zones"] == ["dlgb.test"]
    done = await order(client, context, customer, body)
    assert done["status"] == "valid", done["error"]
    cert = (await client.get(f"/v1/certificates/{done['certificate_id']}", headers=customer)).json()
    assert cert["sans"] == ["dlga.test", "*.dlga.test"] and cert["trusted"]
    assert {b["hostname"] for b in cert["bindings"]} == {"webmail.dlga.test", "mail.dlga.test"}
    assert query_txt(TARGET, (delegation_bind.host, delegation_bind.port)) == set()

    # A renewal routes the same way at run time. The CA's resolver (start_resolver) keeps the
    # issuance's TXT answer for up to a second: renewing sooner, on a quiet machine, made Pebble
    # read the old value.
    await asyncio.sleep(1.5)
    r = await client.post(f"/v1/certificates/{cert['id']}/renew", headers=customer)
    assert r.status_code == 202, r.text
    renewal = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert renewal["status"] == "valid", renewal["error"]
    assert (await client.get(f"/v1/certificates/{cert['id']}", headers=customer)).json()["revision"] == 2
    assert query_txt(TARGET, (delegation_bind.host, delegation_bind.port)) == set()


@pytest.mark.parametrize(("name", "code", "why"), [("loop.dlga.test", "dns_cname_loop", "loops"),
                                                    ("long.dlga.test", "dns_cname_loop", "more than 8 CNAMEs"),
                                                    ("gone.dlga.test", "dns_cname_dangling", "nothing.nowhere.test")])
async def test_cname_loop_and_dangling_cname_are_coded(client, admin, context, ready, delegation_bind,
                                                       customer_headers, name, code, why):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "dlga.test", server["id"], account_id)
    zone_b = await provider(client, admin, delegation_bind, zones=["dlgb.test"])
    failed = await order(client, context, customer, {"names": [name], "dns_provider_id": zone_b})
    assert failed["status"] == "invalid", failed
    assert failed["error"]["step"] == "dns_update" and failed["error"]["code"] == code, failed["error"]
    assert why in failed["error"]["message"]
    assert query_txt(f"long.{TARGET}", (delegation_bind.host, delegation_bind.port)) == set()


async def test_the_platforms_provider_does_not_follow_an_accounts_cname_into_other_names(
        client, admin, context, ready, delegation_bind, customer_headers):
    """The platform's key can write TXT anywhere in dlgb.test, but it declares no zone for
    delegation: an account that points its `_acme-challenge` at a name there (another tenant's,
    the platform's) must not get the platform to write it. (An account's own provider follows
    its CNAMEs anywhere: its credentials, its business.)"""
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "dlga.test", server["id"], account_id)
    platform = await provider(client, admin, delegation_bind)
    body = {"domain": "dlga.test", "dns_provider_id": platform}

    failed = await order(client, context, customer, body)
    assert failed["status"] == "invalid" and failed["error"]["step"] == "dns_update", failed
    assert failed["error"]["code"] == "dns_cname_target_not_allowed", failed["error"]
    assert TARGET in failed["error"]["message"]
    assert query_txt(TARGET, (delegation_bind.host, delegation_bind.port)) == set()

    # Once the platform declares dlgb.test for delegated challenges, the same order is issued.
    declared = await provider(client, admin, delegation_bind, zones=["dlgb.test"])
    assert declared
    done = await order(client, context, customer, body)
    assert done["status"] == "valid", done["error"]
    assert query_txt(TARGET, (delegation_bind.host, delegation_bind.port)) == set()


async def test_the_platforms_provider_follows_a_cname_within_the_orders_own_domain(
        client, admin, context, ready, delegation_bind, customer_headers):
    """A CNAME from one name of the account's domain to another of the same domain is the
    account's own business: the platform's provider writes the target."""
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "dlgb.test", server["id"], account_id)
    platform = await provider(client, admin, delegation_bind)
    done = await order(client, context, customer, {"names": ["www.dlgb.test"], "dns_provider_id": platform})
    assert done["status"] == "valid", done["error"]
    assert query_txt("inner.dlgb.test", (delegation_bind.host, delegation_bind.port)) == set()
