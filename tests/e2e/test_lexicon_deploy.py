"""The `lexicon` kind end to end: a wildcard validated through PowerDNS's HTTP API (dns-lexicon's
powerdns provider), stored, bound to webmail and mail, deployed by the agent, and served by the
real Postfix, Dovecot and nginx with Pebble's chain (host names checked)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.acme_fixtures import controller_using
from tests.support.api import create_domain, create_server
from tests.support.pki import write_pem
from tests.support.tlsprobe import served_fingerprint
from tests.support.worker import order_finished, server_applied, work_until

pytestmark = [pytest.mark.daemons, pytest.mark.acme]


async def test_lexicon_wildcard_reaches_the_daemons(client, admin, controller, stack, powerdns_server,
                                                    powerdns_pebble, customer_headers, tmp_path):
    daemons, agent = stack
    zone = f"lxe{uuid.uuid4().hex[:8]}.test"
    powerdns_server.create_zone(zone)
    server = await create_server(client, admin, name="lexicon-e2e", hostname=daemons.hostname,
                                 agent_url=daemons.agent_url, agent_tls_fingerprint=agent.fingerprint)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, zone, server["id"], account_id)
    r = await client.post("/v1/dns-providers", json={"name": "pdns", "kind": "lexicon", "settings": {
        "provider": "powerdns", "options": {"pdns_server": powerdns_server.api_url},
        "credentials": {"auth_token": powerdns_server.api_key},
        "propagation_nameservers": [powerdns_server.address]}}, headers=admin)
    assert r.status_code == 201, r.text

    with controller_using(controller, powerdns_pebble) as pebble:
        root_file = str(write_pem(tmp_path / "pebble-root.pem", pebble.issuing_roots_pem()))
        r = await client.post("/v1/certificate-orders", json={
            "domain": zone, "wildcard": True, "challenge": "dns-01", "dns_provider_id": r.json()["id"],
            "bind": ["webmail", "mail"]}, headers=customer)
        assert r.status_code == 202, r.text
        order = await work_until(controller, order_finished(client, customer, r.json()["id"]))
        assert order["status"] == "valid", order["error"]
        await work_until(controller, server_applied(client, admin, server["id"]))

    cert = (await client.get(f"/v1/certificates/{order['certificate_id']}", headers=customer)).json()
    assert powerdns_server.txt_records(zone) == []

    def probe(port, protocol, sni):
        return served_fingerprint("127.0.0.1", port, protocol, sni, ca_file=root_file, check_hostname=True)

    for port, protocol in daemons.mail_ports():
        assert await asyncio.to_thread(probe, port, protocol, f"mail.{zone}") == cert["fingerprint_sha256"]
    assert await asyncio.to_thread(probe, daemons.ports["https"], "https", f"webmail.{zone}") == cert["fingerprint_sha256"]
