"""End to end through the public API: bind certificates, let the worker deliver to a real agent,
and connect to real Postfix, Dovecot and nginx as a client would.

The agent's own tests (tests/agent) cover signatures, replays and stale generations; here the
question is whether what the API says is bound is what clients are actually served.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.api import create_domain, create_server, list_all, upload, upload_body
from tests.support.daemons import write_agent_config
from tests.support.tlsprobe import served_fingerprint
from tests.support.worker import server_applied, work_until

pytestmark = pytest.mark.daemons


async def served(stack, port, protocol, sni, ca_file=None):
    return await asyncio.to_thread(
        served_fingerprint, "127.0.0.1", port, protocol, sni, ca_file=ca_file, check_hostname=ca_file is not None
    )


async def all_served(stack, sni, ca_file=None) -> set[str]:
    """The fingerprints the six mail ports serve for ``sni`` (one value when they agree)."""
    return {await served(stack, port, protocol, sni, ca_file) for port, protocol in stack.mail_ports()}


async def deployments(client, admin, server_id) -> list[dict]:
    return (await client.get(f"/v1/servers/{server_id}/deployments", headers=admin)).json()["items"]



async def test_bind_deploy_and_serve(client, admin, controller, stack, test_ca, settings, customer_headers,
                                     sent_documents):
    stack, agent = stack
    ca_file = str(settings.trust_bundle)
    server = await create_server(client, admin, name="e2e", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    account_id, customer = await customer_headers()
    for name in ("a.test", "b.test", "c.test"):
        await create_domain(client, admin, name, server["id"], account_id)
    wildcard = test_ca.issue(["a.test", "*.a.test"])
    san = test_ca.issue(["webmail.b.test", "mail.b.test"], key_type="rsa-2048")
    webmail_c = test_ca.issue(["webmail.c.test"], key_type="ec-p384")
    certs = {key: await upload(client, customer, issued) for key, issued in
             (("a", wildcard), ("b", san), ("c", webmail_c))}
    for domain, key, services in (("a.test", "a", ("webmail", "mail")), ("b.test", "b", ("webmail", "mail")),
                                  ("c.test", "c", ("webmail",))):
        for service in services:
            r = await client.put(f"/v1/domains/{domain}/bindings/{service}", json={"certificate_id": certs[key]["id"]}, headers=customer)
            assert r.status_code == 201, r.text

    status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
    assert status["deployment"]["up_to_date"] is False
    done = await work_until(controller, server_applied(client, admin, server["id"]))
    latest = (await deployments(client, admin, server["id"]))[0]
    assert latest["status"] == "applied" and latest["generation"] == done["desired_generation"]
    config = (await client.get(f"/v1/servers/{server['id']}/config", headers=admin)).json()
    assert config["mail"] == {"mail.a.test": wildcard.fingerprint, "mail.b.test": san.fingerprint}
    assert "key" not in str(config).lower().replace("key_type", "")

    default = server_default = (await client.get(f"/v1/certificates/{server['mail_certificate_id']}", headers=admin)).json()["fingerprint_sha256"]
    # Mail: each SNI name gets its bound certificate, verified like a client (CA + host name).
    assert await all_served(stack, "mail.a.test", ca_file) == {wildcard.fingerprint}
    assert await all_served(stack, "mail.b.test", ca_file) == {san.fingerprint}
    # No binding, unknown name, or no SNI at all: the server-wide certificate.
    for sni in ("mail.c.test", "unknown.example", None):
        assert await all_served(stack, sni) == {server_default}
    # Webmail over HTTPS.
    https = stack.ports["https"]
    assert await served(stack, https, "https", "webmail.a.test", ca_file) == wildcard.fingerprint
    assert await served(stack, https, "https", "webmail.b.test", ca_file) == san.fingerprint
    assert await served(stack, https, "https", "webmail.c.test", ca_file) == webmail_c.fingerprint
    assert await served(stack, https, "https", "webmail.unknown.example") == default
    assert await served(stack, https, "https", None) == default
    status = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
    assert status["deployment"]["up_to_date"] is True and status["warnings"] == []

    # Replacing the material reaches the daemons; the bindings stay.
    renewed = test_ca.issue(["a.test", "*.a.test"])
    r = await client.put(f"/v1/certificates/{certs['a']['id']}", json=upload_body(renewed), headers=customer)
    assert r.status_code == 200, r.text
    await work_until(controller, server_applied(client, admin, server["id"]))
    # Only what changed travelled: the two names of a.test and the one new bundle.
    last = sent_documents[-1]
    assert "base_digest" in last and "mail" not in last
    assert last["mail_changes"] == {"mail.a.test": renewed.fingerprint}
    assert last["webmail_changes"] == {"webmail.a.test": renewed.fingerprint}
    assert last["bundles"] == [renewed.fingerprint]
    assert await all_served(stack, "mail.a.test", ca_file) == {renewed.fingerprint}
    assert await served(stack, https, "https", "webmail.a.test", ca_file) == renewed.fingerprint

    # Removing a binding brings back the default.
    assert (await client.delete("/v1/domains/b.test/bindings/webmail", headers=customer)).status_code == 204
    await work_until(controller, server_applied(client, admin, server["id"]))
    assert await served(stack, https, "https", "webmail.b.test") == default
    assert await all_served(stack, "mail.b.test", ca_file) == {san.fingerprint}

    # A trusted server-wide certificate replaces the self-signed default for mail.
    server_cert = await upload(client, admin, test_ca.issue([stack.hostname]))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": server_cert["id"]}, headers=admin)
    assert r.status_code == 200
    await work_until(controller, server_applied(client, admin, server["id"]))
    assert await all_served(stack, None) == {server_cert["fingerprint_sha256"]}
    assert await all_served(stack, stack.hostname, ca_file) == {server_cert["fingerprint_sha256"]}


async def test_broken_bundle_rolls_back_and_fails(client, admin, controller, stack, test_ca, customer_headers):
    stack, agent = stack
    server = (await client.get("/v1/servers", headers=admin)).json()["items"]
    if not server:  # this test also runs alone
        server = [await create_server(client, admin, name="e2e", hostname=stack.hostname,
                                      agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)]
    server = server[0]
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "d.test", server["id"], account_id)
    first = test_ca.issue(["*.d.test"])
    cert = await upload(client, customer, first)
    await client.put("/v1/domains/d.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
    await work_until(controller, server_applied(client, admin, server["id"]))
    assert await all_served(stack, "mail.d.test") == {first.fingerprint}

    # The test hook makes the agent write Postfix bundles certificate-first: Postfix accepts
    # the files, then fails the handshake. The agent must notice, roll back and say so.
    write_agent_config(stack, postfix_bundle_cert_first=True)
    agent.restart()
    try:
        second = test_ca.issue(["*.d.test"])
        r = await client.put(f"/v1/certificates/{cert['id']}", json=upload_body(second), headers=customer)
        assert r.status_code == 200

        async def failed():
            items = await deployments(client, admin, server["id"])
            return items[0] if items[0]["status"] == "failed" else None

        deployment = await work_until(controller, failed)
        error = deployment["last_error"]
        assert error["details"]["daemon"] == "postfix" and error["step"] in ("verify", "validate"), error
        assert error["details"]["rolled_back"] is True and error["details"]["message"] and error["message"]
        # The failure, and the generation applied before it, are in the platform's event log.
        (failed_event,) = await list_all(client, "/v1/events", admin, kind="deployment.failed")
        assert failed_event["subjects"] == {"deployment": deployment["id"], "server": server["id"]}
        assert failed_event["actor"] == {"type": "worker", "id": "test-worker", "role": None}
        assert failed_event["account_id"] is None and failed_event["data"]["generation"] == deployment["generation"]
        assert failed_event["data"]["condition"]["code"] == error["code"]
        assert failed_event["data"]["condition"]["step"] == error["step"]
        applied_events = await list_all(client, "/v1/events", admin, kind="deployment.applied", subject=server["id"])
        assert applied_events and applied_events[-1]["data"]["generation"] < deployment["generation"]
        assert await list_all(client, "/v1/events", customer, kind="deployment.failed") == []  # the platform's
        assert await all_served(stack, "mail.d.test") == {first.fingerprint}  # old material still served
        detail = (await client.get(f"/v1/servers/{server['id']}/deployments/{deployment['id']}", headers=admin)).json()
        assert detail["history"] and detail["history"][-1]["outcome"] == "failed"
        status = (await client.get("/v1/domains/d.test/tls", headers=customer)).json()
        assert status["deployment"]["up_to_date"] is False
    finally:
        write_agent_config(stack)
        agent.restart()
    r = await client.post(f"/v1/servers/{server['id']}/deployments", headers=admin)
    assert r.status_code == 202
    await work_until(controller, server_applied(client, admin, server["id"]))
    assert await all_served(stack, "mail.d.test") == {second.fingerprint}


async def test_agent_down_gets_latest_generation(client, admin, controller, stack, test_ca, customer_headers):
    stack, agent = stack
    servers = (await client.get("/v1/servers", headers=admin)).json()["items"]
    server = servers[0] if servers else await create_server(
        client, admin, name="e2e", hostname=stack.hostname, agent_url=stack.agent_url,
        agent_tls_fingerprint=agent.fingerprint)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "e.test", server["id"], account_id)
    await work_until(controller, server_applied(client, admin, server["id"]))
    applied_before = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["applied_generation"]

    agent.stop()
    try:
        versions = [test_ca.issue(["*.e.test"]) for _ in range(3)]
        cert = await upload(client, customer, versions[0])
        await client.put("/v1/domains/e.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
        for issued in versions[1:]:
            await client.put(f"/v1/certificates/{cert['id']}", json=upload_body(issued), headers=customer)

        async def retrying():
            items = await deployments(client, admin, server["id"])
            return items[0] if items[0]["status"] == "retrying" and items[0]["attempts"] >= 2 else None

        waiting = await work_until(controller, retrying, timeout=30)
        assert waiting["last_error"]["code"] in ("agent_unreachable", "agent_timeout")
    finally:
        agent.start()
    done = await work_until(controller, server_applied(client, admin, server["id"]), timeout=60)
    assert done["applied_generation"] == applied_before + 3
    assert await all_served(stack, "mail.e.test") == {versions[2].fingerprint}
    items = await deployments(client, admin, server["id"])
    newest = [d for d in items if d["generation"] > applied_before]
    # One deployment carried the three changes made while the agent was down (raised in place,
    # not one row each), and the agent applied the latest generation once.
    assert [(d["status"], d["changes"]) for d in newest] == [("applied", 3)]


async def test_an_agent_that_cannot_read_the_delta_gets_the_whole_document(
        client, admin, controller, stack, test_ca, customer_headers, sent_documents, monkeypatch):
    """An agent answering 400 invalid_request to a delta (as one that still requires ``digest``
    does) gets the whole document in the same delivery, and serves it."""
    from app.deployments.agent_client import AgentClient

    stack, agent = stack
    server = await create_server(client, admin, name="e2e-old", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "o.test", server["id"], account_id)
    await work_until(controller, server_applied(client, admin, server["id"]))

    spied = AgentClient.put_config

    async def unreadable_delta(self, document):
        if "base_digest" in document:  # the real agent refuses a digest it cannot read: 400
            document = {**document, "digest": "not-a-digest"}
        return await spied(self, document)

    monkeypatch.setattr(AgentClient, "put_config", unreadable_delta)
    issued = test_ca.issue(["mail.o.test"])
    cert = await upload(client, customer, issued)
    r = await client.put("/v1/domains/o.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
    assert r.status_code == 201, r.text
    await work_until(controller, server_applied(client, admin, server["id"]))
    assert "base_digest" in sent_documents[-2] and "base_digest" not in sent_documents[-1]
    assert sent_documents[-1]["mail"]["mail.o.test"] == issued.fingerprint
    assert await all_served(stack, "mail.o.test") == {issued.fingerprint}
