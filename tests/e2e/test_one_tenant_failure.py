"""Blast radius of one, end to end: two tenants on one server with real Postfix, Dovecot and
nginx; tenant A's certificate has a DSA-2048 key, which OpenSSL cannot serve.

Before isolation the agent's verification failed, the whole generation rolled back, and every
other tenant's later change on the server failed with it, while A's status only said
``not_yet_deployed``. Now A's names stay on what they served before and A's TLS status names
the failure; B's changes deploy and B's status says ``deployed``.

The DSA certificate is stored as a legacy row, through the certificate service below the upload
checks (an upload policy refuses such keys through the API now; rows stored before it exist).
"""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa

from app.accounts.caller import OPERATOR
from app.certificates.material import Material
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.kit.trust import TRUSTED
from tests.support.api import create_domain, create_server, upload, upload_body
from tests.support.tlsprobe import served_fingerprint
from tests.support.worker import server_applied, work_until


def names(domain: str) -> list[str]:
    """Every name the domain's clients reach (mail clients fetch their settings from the last two)."""
    return [f"mail.{domain}", f"webmail.{domain}", f"autoconfig.{domain}", f"autodiscover.{domain}"]


pytestmark = pytest.mark.daemons


async def served_everywhere(stack, domain: str) -> set[str]:
    """What the six mail ports serve for mail.<domain> and nginx for webmail.<domain>."""
    seen = set()
    for port, protocol in stack.mail_ports():
        seen.add(await asyncio.to_thread(served_fingerprint, "127.0.0.1", port, protocol, f"mail.{domain}"))
    seen.add(await asyncio.to_thread(served_fingerprint, "127.0.0.1", stack.ports["https"], "https",
                                     f"webmail.{domain}"))
    return seen


async def store_legacy(context, account_id: str, issued) -> str:
    """A certificate row as stored before the upload key policy existed; returns its id."""
    material = Material(
        leaf=issued.cert, chain=list(issued.chain), key_pem=issued.key_pem.encode(),
        sans=names("a.test"), fingerprint=issued.fingerprint,
        self_signed=False, trust=TRUSTED, trust_store=context.trust.identity,
    )
    async with context.sessionmaker() as session:
        service = CertificateService(CertificateRepository(session), context.master_key)
        cert = await service.store(material, account_id=account_id, name="legacy dsa", source="upload", caller=OPERATOR)
        await session.commit()
        return cert.id



async def bind(client, headers, domain, cert_id):
    for service in ("mail", "webmail"):
        r = await client.put(f"/v1/domains/{domain}/bindings/{service}", json={"certificate_id": cert_id},
                             headers=headers)
        assert r.status_code in (200, 201), r.text  # 201 on a first bind


async def test_one_tenants_unusable_certificate_fails_only_that_tenant(
    client, admin, controller, stack, test_ca, customer_headers, sent_documents
):
    stack, agent = stack
    server = await create_server(client, admin, name="blast", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    account_a, tenant_a = await customer_headers("tenant a")
    account_b, tenant_b = await customer_headers("tenant b")
    await create_domain(client, admin, "a.test", server["id"], account_a)
    await create_domain(client, admin, "b.test", server["id"], account_b)
    a1, b1 = test_ca.issue(names("a.test")), test_ca.issue(names("b.test"))
    cert_a = await upload(client, tenant_a, a1)
    cert_b = await upload(client, tenant_b, b1)
    await bind(client, tenant_a, "a.test", cert_a["id"])
    await bind(client, tenant_b, "b.test", cert_b["id"])
    await work_until(controller, server_applied(client, admin, server["id"]))
    assert await served_everywhere(stack, "a.test") == {a1.fingerprint}

    # Tenant A binds its legacy DSA-2048 certificate.
    dsa_cert = test_ca.issue(names("a.test"), key=dsa.generate_private_key(2048))
    legacy_id = await store_legacy(controller, account_a, dsa_cert)
    await bind(client, tenant_a, "a.test", legacy_id)
    await work_until(controller, server_applied(client, admin, server["id"]))
    deployments = (await client.get(f"/v1/servers/{server['id']}/deployments", headers=admin)).json()["items"]
    latest = deployments[0]
    assert latest["status"] == "applied", latest
    assert {(f["service"], f["name"], f["code"], f["fingerprint"], f["serving"])
            for f in latest["failed_names"]} == {
        ("mail", "mail.a.test", "handshake_failed", dsa_cert.fingerprint, a1.fingerprint),
        ("webmail", "webmail.a.test", "handshake_failed", dsa_cert.fingerprint, a1.fingerprint),
    }
    assert await served_everywhere(stack, "a.test") == {a1.fingerprint}  # what it served before
    assert await served_everywhere(stack, "b.test") == {b1.fingerprint}

    async def tls(domain, headers):
        r = await client.get(f"/v1/domains/{domain}/tls", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    status_a = await tls("a.test", tenant_a)
    for service in ("mail", "webmail"):
        dep = status_a[service]["deployment"]
        assert dep["state"] == "failed" and dep["reason"] == "deployment_failed", dep
        assert dep["agent_code"] == "handshake_failed" and dep["message"]
        assert dep["fingerprint"] == dsa_cert.fingerprint and dep["serving"] == a1.fingerprint
    assert [w["code"] for w in status_a["warnings"]] == ["deployment_failed", "deployment_failed"]
    assert "mail.a.test" in status_a["warnings"][0]["message"] + status_a["warnings"][1]["message"]
    bindings_a = (await client.get("/v1/domains/a.test/bindings", headers=tenant_a)).json()
    assert bindings_a["mail"]["deployment"]["state"] == "failed"
    status_b = await tls("b.test", tenant_b)
    assert status_b["mail"]["deployment"]["state"] == "deployed"
    assert status_b["webmail"]["deployment"]["state"] == "deployed"
    assert status_b["warnings"] == []

    # Tenant B's later change deploys (as a delta), A stays reported and on what it served.
    b2 = test_ca.issue(names("b.test"))
    r = await client.put(f"/v1/certificates/{cert_b['id']}", json=upload_body(b2), headers=tenant_b)
    assert r.status_code == 200, r.text
    await work_until(controller, server_applied(client, admin, server["id"]))
    last = sent_documents[-1]
    assert "base_digest" in last and last["mail_changes"] == {"mail.b.test": b2.fingerprint}
    assert await served_everywhere(stack, "b.test") == {b2.fingerprint}
    assert await served_everywhere(stack, "a.test") == {a1.fingerprint}
    latest = (await client.get(f"/v1/servers/{server['id']}/deployments", headers=admin)).json()["items"][0]
    assert latest["status"] == "applied"
    assert {f["name"] for f in latest["failed_names"]} == {"mail.a.test", "webmail.a.test"}
    assert (await tls("a.test", tenant_a))["mail"]["deployment"]["state"] == "failed"
    assert (await tls("b.test", tenant_b))["mail"]["deployment"]["state"] == "deployed"

    # A later good change for A clears it.
    a2 = test_ca.issue(names("a.test"))
    cert_a2 = await upload(client, tenant_a, a2)
    await bind(client, tenant_a, "a.test", cert_a2["id"])
    await work_until(controller, server_applied(client, admin, server["id"]))
    assert await served_everywhere(stack, "a.test") == {a2.fingerprint}
    status_a = await tls("a.test", tenant_a)
    assert status_a["mail"]["deployment"]["state"] == "deployed" and status_a["warnings"] == []
    latest = (await client.get(f"/v1/servers/{server['id']}/deployments", headers=admin)).json()["items"][0]
    assert latest["failed_names"] == []
