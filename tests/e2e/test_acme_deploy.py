"""ACME end to end: Pebble issues, the worker stores and binds, the agent deploys, and clients
connecting to the real Postfix, Dovecot and nginx get the Pebble chain, verified against
Pebble's root with host name checking on. HTTP-01 is answered by the agent's own nginx."""

from __future__ import annotations

import asyncio

import pytest

from app.certificates.models import Certificate
from app.kit.signing import public_key_to_text
from app.kit.time import utc_now
from tests.support.acme_fixtures import controller_using
from tests.support.api import create_domain, create_server
from tests.support.daemons import running_stack
from tests.support.pebble import start_pebble, stop_pebble
from tests.support.pki import write_pem
from tests.support.ports import free_port
from tests.support.tlsprobe import served_fingerprint
from tests.support.worker import order_finished, server_applied, work_until

pytestmark = [pytest.mark.daemons, pytest.mark.acme]


@pytest.fixture(scope="module")
def pebble(bind_server):
    """A Pebble of this module's own, validating HTTP-01 on the port our nginx will listen on."""
    server = start_pebble(bind_server.address, http_port=free_port())
    yield server
    stop_pebble(server)


@pytest.fixture(scope="module")
def acme_stack(e2e_controller_key, pebble):
    with running_stack(public_key_to_text(e2e_controller_key.public_key()), http_port=pebble.http_port) as pair:
        yield pair


@pytest.fixture
def issuing(controller, pebble, tmp_path):
    """The controller issuing from this module's Pebble; yields Pebble's root as a CA file."""
    with controller_using(controller, pebble):
        yield str(write_pem(tmp_path / "pebble-root.pem", pebble.issuing_roots_pem()))


async def order_and_wait(client, headers, context, body) -> dict:
    r = await client.post("/v1/certificate-orders", json=body, headers=headers)
    assert r.status_code == 202, r.text
    order = await work_until(context, order_finished(client, headers, r.json()["id"]))
    assert order["status"] == "valid", order["error"]
    return order


async def test_wildcard_http01_and_renewal_reach_the_daemons(client, admin, controller, issuing, acme_stack,
                                                             bind_server, customer_headers):
    stack, agent = acme_stack
    root_file = issuing
    server = await create_server(client, admin, name="acme-e2e", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "z10.test", server["id"], account_id)
    await create_domain(client, admin, "z11.test", server["id"], account_id)
    r = await client.post("/v1/dns-providers", json={"name": "bind", "kind": "rfc2136", "settings": {
        "server": bind_server.host, "port": bind_server.port, "key_name": bind_server.key_name,
        "key_secret": bind_server.key_secret}}, headers=admin)
    provider_id = r.json()["id"]

    # The recommended path: one wildcard over DNS-01, bound to webmail and mail (it already
    # covers the autoconfiguration names, so asking for them adds none).
    wildcard = await order_and_wait(client, customer, controller, {
        "domain": "z10.test", "wildcard": True, "challenge": "dns-01", "dns_provider_id": provider_id,
        "bind": ["webmail", "mail"], "autoconfig": True})
    assert wildcard["names"] == ["z10.test", "*.z10.test"]
    # HTTP-01 for webmail.z11.test and the names mail clients fetch their settings from,
    # answered by the agent's nginx on Pebble's HTTP port.
    webmail = await order_and_wait(client, customer, controller, {
        "names": ["webmail.z11.test"], "challenge": "http-01", "bind": ["webmail"], "autoconfig": True})
    await work_until(controller, server_applied(client, admin, server["id"]))
    assert list((stack.out("nginx") / "acme-challenge").iterdir()) == []  # the answer was withdrawn
    assert webmail["authorizations"] == [{"identifier": name, "challenge": "http-01", "status": "valid"} for name in
                                         ("webmail.z11.test", "autoconfig.z11.test", "autodiscover.z11.test")]

    wildcard_fp = (await client.get(f"/v1/certificates/{wildcard['certificate_id']}", headers=customer)).json()["fingerprint_sha256"]
    webmail_fp = (await client.get(f"/v1/certificates/{webmail['certificate_id']}", headers=customer)).json()["fingerprint_sha256"]

    def probe(port, protocol, sni):
        return served_fingerprint("127.0.0.1", port, protocol, sni, ca_file=root_file, check_hostname=True)

    for port, protocol in stack.mail_ports():
        assert await asyncio.to_thread(probe, port, protocol, "mail.z10.test") == wildcard_fp
    https = stack.ports["https"]
    assert await asyncio.to_thread(probe, https, "https", "webmail.z10.test") == wildcard_fp
    assert await asyncio.to_thread(probe, https, "https", "webmail.z11.test") == webmail_fp
    # nginx presents each domain's webmail certificate for its autoconfiguration names too.
    for name in ("autoconfig.z11.test", "autodiscover.z11.test"):
        assert await asyncio.to_thread(probe, https, "https", name) == webmail_fp
    for name in ("autoconfig.z10.test", "autodiscover.z10.test"):
        assert await asyncio.to_thread(probe, https, "https", name) == wildcard_fp
    status = (await client.get("/v1/domains/z11.test/tls", headers=customer)).json()
    assert status["autoconfig"]["uncovered_names"] == []

    # Renewal: make the wildcard due; the worker renews it, redeploys, and the new serial is served.
    async with controller.sessionmaker() as session:
        row = await session.get(Certificate, wildcard["certificate_id"])
        before_serial = row.serial
        row.renewal_at = utc_now()
        await session.commit()

    async def renewed_and_deployed():
        cert = (await client.get(f"/v1/certificates/{wildcard['certificate_id']}", headers=customer)).json()
        srv = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
        done = cert["revision"] == 2 and srv["applied_generation"] == srv["desired_generation"]
        return cert if done else None

    cert = await work_until(controller, renewed_and_deployed)
    assert cert["serial"] != before_serial
    assert {b["hostname"] for b in cert["bindings"]} == {"webmail.z10.test", "mail.z10.test"}
    for port, protocol in stack.mail_ports():
        assert await asyncio.to_thread(probe, port, protocol, "mail.z10.test") == cert["fingerprint_sha256"]
    assert await asyncio.to_thread(probe, https, "https", "webmail.z10.test") == cert["fingerprint_sha256"]
