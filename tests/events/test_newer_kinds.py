"""Events of the newer features: enrolment tokens and agents enrolling, certificate requests,
webhooks, DNS providers. Each is recorded by the request that makes the change, with its
author and its account (null for the platform's), and none carries a secret: not the enrolment
token, not the webhook's signing secret, not a TSIG key, not a request's private key."""

from __future__ import annotations

import json

from tests.events.test_events_api import only, token_id
from tests.support.api import create_domain, create_server, list_all
from tests.support.pki import sign_csr

TSIG_SECRET = "c2VjcmV0LXRzaWcta2V5LWZvci10ZXN0cw=="
FP = "ab" * 32


def of(events: list[dict], kind: str, role: str, subject: str) -> dict:
    return only([e for e in events if e["subjects"].get(role) == subject], kind)


async def test_enrolment_tokens_and_an_agent_enrolling(client, admin):
    server = await create_server(client, admin)
    made = (await client.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={"description": "mx1 install"},
                              headers=admin)).json()
    withdrawn = (await client.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={}, headers=admin)).json()
    assert (await client.delete(f"/v1/servers/{server['id']}/enrolment-tokens/{withdrawn['id']}",
                                headers=admin)).status_code == 204
    enrolled = await client.post("/v1/agent-enrolments", json={
        "token": made["token"], "agent_url": "https://mx1.hosting.test:8750", "agent_tls_fingerprint": FP})
    assert enrolled.status_code == 200, enrolled.text
    # A refused use changes nothing, so records nothing.
    again = await client.post("/v1/agent-enrolments", json={
        "token": made["token"], "agent_url": "https://evil.test:8750", "agent_tls_fingerprint": FP})
    assert again.status_code == 403

    events = await list_all(client, "/v1/events", admin)
    as_admin = {"type": "token", "id": token_id(admin), "role": "admin"}
    created = of(events, "enrolment_token.created", "enrolment_token", made["id"])
    assert created["actor"] == as_admin and created["account_id"] is None
    assert created["subjects"] == {"enrolment_token": made["id"], "server": server["id"]}
    assert created["data"]["description"] == "mx1 install" and created["data"]["expires_at"]
    deleted = of(events, "enrolment_token.deleted", "enrolment_token", withdrawn["id"])
    assert deleted["actor"] == as_admin and deleted["data"] == {"used": False} and deleted["account_id"] is None
    agent = only(events, "agent.enrolled")
    assert agent["actor"] == {"type": "enrolment", "id": made["id"], "role": None}
    assert agent["account_id"] is None
    assert agent["subjects"] == {"enrolment_token": made["id"], "server": server["id"]}
    assert agent["data"] == {"agent_url": "https://mx1.hosting.test:8750", "agent_tls_fingerprint": FP,
                             "previous_agent_url": None}
    blob = json.dumps(events)
    for text in (made["token"], withdrawn["token"]):
        assert text not in blob and text.rsplit("_", 1)[1] not in blob


async def test_certificate_requests(client, admin, customer_headers, test_intermediate):
    account, customer = await customer_headers("csr")
    _other, stranger = await customer_headers("csr-other")
    server = await create_server(client, admin)
    await create_domain(client, admin, "shop.test", server["id"], account)
    body = (await client.post("/v1/certificate-requests", json={"names": ["shop.test", "*.shop.test"]},
                              headers=customer)).json()
    dropped = (await client.post("/v1/certificate-requests", json={"names": ["x.shop.test"]},
                                 headers=customer)).json()
    issued = sign_csr(body["csr_pem"], test_intermediate)
    response = await client.post(f"/v1/certificate-requests/{body['id']}/certificate",
                                 json={"certificate_pem": issued, "chain_pem": test_intermediate.cert_pem},
                                 headers=customer)
    assert response.status_code == 201, response.text
    cert = response.json()
    assert (await client.delete(f"/v1/certificate-requests/{dropped['id']}", headers=customer)).status_code == 204

    events = await list_all(client, "/v1/events", customer)
    as_customer = {"type": "token", "id": token_id(customer), "role": "customer"}
    created = of(events, "certificate_request.created", "certificate_request", body["id"])
    assert created["actor"] == as_customer and created["account_id"] == account
    assert created["data"]["names"] == ["shop.test", "*.shop.test"] and created["data"]["key_type"] == "ecdsa-p256"
    assert len(created["data"]["public_key_sha256"]) == 64
    completed = only(events, "certificate_request.completed")
    assert completed["subjects"] == {"certificate_request": body["id"], "certificate": cert["id"]}
    assert completed["data"]["fingerprint_sha256"] == cert["fingerprint_sha256"]
    assert completed["actor"] == as_customer and completed["account_id"] == account
    # The import is also a stored certificate, in the same transaction, just before.
    uploaded = of(events, "certificate.uploaded", "certificate", cert["id"])
    assert uploaded["id"] < completed["id"]
    deleted = only(events, "certificate_request.deleted")
    assert deleted["subjects"] == {"certificate_request": dropped["id"]}
    assert deleted["data"] == {"names": ["x.shop.test"], "status": "pending"}
    blob = json.dumps(events)
    assert "PRIVATE KEY" not in blob and "-----BEGIN" not in blob
    # Another tenant sees none of them.
    theirs = await list_all(client, "/v1/events", stranger)
    assert not [e for e in theirs if e["kind"].startswith("certificate_request.")]


async def test_webhooks(client, admin, customer_headers):
    account, customer = await customer_headers("hooks")
    _other, stranger = await customer_headers("hooks-other")
    url = "https://93.184.216.34/hooks/certpost?token=s3cret"
    mine = await client.post("/v1/webhooks", json={"url": url, "kinds": ["certificate.expiring"],
                                                   "description": "panel"}, headers=admin)
    assert mine.status_code == 201, mine.text
    hook = mine.json()
    customer_hook = await client.post("/v1/webhooks", json={"url": "http://10.0.0.5/x", "kinds": ["binding.set"],
                                                            "account_id": account}, headers=admin)
    assert customer_hook.status_code == 201, customer_hook.text
    admins = customer_hook.json()
    r = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False, "kinds": ["certificate.expiring"]},
                           headers=admin)
    assert r.status_code == 200, r.text
    unchanged = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=admin)
    assert unchanged.status_code == 200
    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=admin)).status_code == 204

    events = await list_all(client, "/v1/events", admin)
    as_admin = {"type": "token", "id": token_id(admin), "role": "admin"}
    created = of(events, "webhook.created", "webhook", hook["id"])
    assert created["actor"] == as_admin and created["account_id"] is None
    assert created["data"] == {"url": "https://93.184.216.34/hooks/certpost", "kinds": ["certificate.expiring"],
                               "description": "panel"}
    changed = only(events, "webhook.changed")  # the PATCH that changed nothing is not an event
    assert changed["data"]["changed"] == ["enabled"] and changed["data"]["enabled"] is False
    deleted = only(events, "webhook.deleted")
    assert deleted["subjects"] == {"webhook": hook["id"]} and deleted["actor"] == as_admin
    # An administrator's webhook that follows an account is still the platform's: customers do
    # not see admins' webhooks, nor their events.
    followed = of(events, "webhook.created", "webhook", admins["id"])
    assert followed["account_id"] is None
    blob = json.dumps(events)
    assert "s3cret" not in blob and hook["secret"] not in blob
    for headers in (customer, stranger):
        assert not [e for e in await list_all(client, "/v1/events", headers) if e["kind"].startswith("webhook.")]


async def test_dns_providers(client, admin, customer_headers):
    account, customer = await customer_headers("dns")
    _other, stranger = await customer_headers("dns-other")
    body = {"name": "bind primary", "kind": "rfc2136", "account_id": account, "settings": {
        "server": "93.184.216.34", "port": 53, "key_name": "certpost.", "key_secret": TSIG_SECRET}}
    r = await client.post("/v1/dns-providers", json=body, headers=admin)
    assert r.status_code == 201, r.text
    provider = r.json()
    assert (await client.delete(f"/v1/dns-providers/{provider['id']}", headers=customer)).status_code == 204

    events = await list_all(client, "/v1/events", customer)
    created = only(events, "dns_provider.created")
    assert created["actor"] == {"type": "token", "id": token_id(admin), "role": "admin"}
    assert created["account_id"] == account and created["subjects"] == {"dns_provider": provider["id"]}
    assert created["data"] == {"name": "bind primary", "kind": "rfc2136"}
    deleted = only(events, "dns_provider.deleted")
    assert deleted["actor"] == {"type": "token", "id": token_id(customer), "role": "customer"}
    assert TSIG_SECRET not in json.dumps(events)
    assert not [e for e in await list_all(client, "/v1/events", stranger) if e["kind"].startswith("dns_provider.")]
