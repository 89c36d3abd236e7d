"""A server's webmail default, end to end: chosen through the API, delivered by the worker,
applied by the real agent to a real nginx (workers as www-data), and seen by a TLS client.

HTTPS without SNI and for the server's own host name presents the webmail default; every
tenant's ``webmail.<domain>`` keeps its own binding; the mail daemons keep the server-wide
mail certificate. A default nginx cannot serve is rolled back, and the old one stays served.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.api import create_domain, create_server, upload
from tests.support.daemons import write_agent_config
from tests.support.tlsprobe import served_fingerprint
from tests.support.worker import server_applied, work_until

pytestmark = pytest.mark.daemons


async def https(stack, sni, ca_file=None) -> str:
    return await asyncio.to_thread(
        served_fingerprint, "127.0.0.1", stack.ports["https"], "https", sni,
        ca_file=ca_file, check_hostname=ca_file is not None,
    )


def openssl_no_sni(stack) -> str:
    """The fingerprint ``openssl s_client -noservername`` is shown: a client that sends no SNI."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{stack.ports['https']}", "-noservername"],
        input=b"", capture_output=True, timeout=20, check=False,
    ).stdout
    cert = x509.load_pem_x509_certificate(out[out.index(b"-----BEGIN CERTIFICATE-----"):])
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


async def mail_no_sni(stack) -> set[str]:
    return {
        await asyncio.to_thread(served_fingerprint, "127.0.0.1", port, protocol, None)
        for port, protocol in stack.mail_ports()
    }


async def latest_deployment(client, admin, server_id) -> dict:
    return (await client.get(f"/v1/servers/{server_id}/deployments", headers=admin)).json()["items"][0]



async def test_webmail_default_set_changed_unset_and_rolled_back(
    client, admin, controller, stack, test_ca, settings, customer_headers, sent_documents
):
    stack, agent = stack
    ca_file = str(settings.trust_bundle)
    server = await create_server(client, admin, name="webmail-e2e", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    sid = server["id"]
    registration = (await client.get(f"/v1/certificates/{server['mail_certificate_id']}", headers=admin)).json()

    # Two tenants, each with its own webmail certificate.
    tenants = {}
    for domain in ("tenant-one.test", "tenant-two.test"):
        account_id, customer = await customer_headers()
        await create_domain(client, admin, domain, sid, account_id)
        cert = await upload(client, customer, test_ca.issue([f"webmail.{domain}"]))
        r = await client.put(f"/v1/domains/{domain}/bindings/webmail", json={"certificate_id": cert["id"]},
                             headers=customer)
        assert r.status_code == 201, r.text
        tenants[f"webmail.{domain}"] = cert["fingerprint_sha256"]

    async def assert_served(default: str, *, trusted: bool) -> None:
        assert await https(stack, None) == default
        assert openssl_no_sni(stack) == default
        assert await https(stack, stack.hostname, ca_file if trusted else None) == default
        assert await https(stack, "unknown.example.test") == default
        for name, fp in tenants.items():
            assert await https(stack, name, ca_file) == fp, name

    await work_until(controller, server_applied(client, admin, sid))
    # Out of the box: the self-signed registration certificate (the server-wide mail certificate).
    await assert_served(registration["fingerprint_sha256"], trusted=False)

    # Set: a trusted certificate for the host name.
    chosen = await upload(client, admin, test_ca.issue([stack.hostname]))
    r = await client.put(f"/v1/servers/{sid}/webmail-certificate", json={"certificate_id": chosen["id"]}, headers=admin)
    assert r.status_code == 200, r.text
    await work_until(controller, server_applied(client, admin, sid))
    await assert_served(chosen["fingerprint_sha256"], trusted=True)
    assert await mail_no_sni(stack) == {registration["fingerprint_sha256"]}  # mail is not touched
    # It travelled as a delta: the new scalar and its one bundle, no name changed.
    last = sent_documents[-1]
    assert last["webmail_default"] == chosen["fingerprint_sha256"]
    assert last["server_certificate"] == registration["fingerprint_sha256"]
    assert "base_digest" in last and last["mail_changes"] == last["webmail_changes"] == {}
    assert last["bundles"] == [chosen["fingerprint_sha256"]]
    verified = (await latest_deployment(client, admin, sid))
    assert verified["status"] == "applied"

    # Change: another one; and a trusted server-wide mail certificate meanwhile.
    second = await upload(client, admin, test_ca.issue([stack.hostname, f"webmail.{stack.hostname}"]))
    r = await client.put(f"/v1/servers/{sid}/webmail-certificate", json={"certificate_id": second["id"]}, headers=admin)
    assert r.status_code == 200, r.text
    mail = await upload(client, admin, test_ca.issue([stack.hostname]))
    r = await client.put(f"/v1/servers/{sid}/mail-certificate", json={"certificate_id": mail["id"]}, headers=admin)
    assert r.status_code == 200, r.text
    await work_until(controller, server_applied(client, admin, sid))
    await assert_served(second["fingerprint_sha256"], trusted=True)
    assert await mail_no_sni(stack) == {mail["fingerprint_sha256"]}

    # Unset: back to the default, the (now trusted) server-wide mail certificate.
    r = await client.delete(f"/v1/servers/{sid}/webmail-certificate", headers=admin)
    assert r.status_code == 200, r.text
    await work_until(controller, server_applied(client, admin, sid))
    await assert_served(mail["fingerprint_sha256"], trusted=True)
    status = (await client.get("/v1/domains/tenant-one.test/tls", headers=admin)).json()
    assert status["webmail"]["source"] == "binding"

    # Broken: nginx's file of the new default is unusable (the test hook writes the key
    # without its certificate, as a disk gone bad or a hand edit could). The agent's own checks
    # pass (its store is intact), nginx loads the file at handshake time and fails; verification
    # catches it and the change is rolled back: the previous file is back.
    broken = await upload(client, admin, test_ca.issue([stack.hostname]))
    write_agent_config(stack, nginx_bundle_key_only=True, verify_timeout=2)
    agent.restart()
    try:
        r = await client.put(f"/v1/servers/{sid}/webmail-certificate", json={"certificate_id": broken["id"]},
                             headers=admin)
        assert r.status_code == 200, r.text

        async def failed():
            latest = await latest_deployment(client, admin, sid)
            return latest if latest["status"] == "failed" else None

        deployment = await work_until(controller, failed)
        error = deployment["last_error"]
        assert error["details"]["daemon"] == "nginx" and error["step"] == "verify", error
        assert error["details"]["rolled_back"] is True and error["message"] and error["at"]
        await assert_served(mail["fingerprint_sha256"], trusted=True)  # the previous default, still
        assert await mail_no_sni(stack) == {mail["fingerprint_sha256"]}
    finally:
        write_agent_config(stack)
        agent.restart()
    r = await client.post(f"/v1/servers/{sid}/deployments", headers=admin)
    assert r.status_code == 202, r.text
    await work_until(controller, server_applied(client, admin, sid))
    await assert_served(broken["fingerprint_sha256"], trusted=True)
