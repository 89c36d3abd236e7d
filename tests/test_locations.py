"""``Location`` on every 201 and 202 (RFC 9110 sections 10.2.2, 15.3.2 and 15.3.3).

The walk finds every operation that documents a 201 or 202 and fails when one is not
exercised here, so a new creating route cannot ship without its Location.
"""

from __future__ import annotations

import base64

from sqlalchemy import update

from app.acme.models import CertificateOrder
from app.certificates.models import Certificate
from tests.support.api import create_domain, create_server, upload, upload_body
from tests.support.pki import sign_csr
from tests.test_access import api_routes


def _created_operations(app) -> set[tuple[str, str]]:
    out = set()
    for route in api_routes(app.routes):
        codes = {route.status_code, *(int(k) for k in (route.responses or {}) if str(k).isdigit())}
        if codes & {201, 202}:
            out |= {(method, route.path) for method in route.methods}
    return out


async def test_every_201_and_202_carries_location(app, client, admin, customer_headers, context, test_ca):
    seen: dict[tuple[str, str], str] = {}

    async def call(method, template, path, status, *, get_back=True, **kwargs):
        r = await client.request(method, path, **kwargs)
        assert r.status_code == status, (template, r.text)
        location = r.headers.get("Location")
        assert location, f"{method} {template}: {status} without Location"
        seen[(method, template)] = location
        if get_back:
            back = await client.get(location, headers=kwargs["headers"])
            assert back.status_code == 200, (location, back.text)
            if "id" in r.json() and "id" in back.json():
                assert back.json()["id"] == r.json()["id"]
        return r

    server = (await call("POST", "/v1/servers", "/v1/servers", 201, headers=admin,
                         json={"name": "mx1", "hostname": "mx1.hosting.test", "software": "postfix-dovecot",
                               "agent_url": "https://mx1.hosting.test:8443/"})).json()
    account = (await call("POST", "/v1/accounts", "/v1/accounts", 201, get_back=False, headers=admin,
                          json={"name": "Shop"})).json()
    assert seen[("POST", "/v1/accounts")] == f"/v1/accounts/{account['id']}"
    token = (await call("POST", "/v1/tokens", "/v1/tokens", 201, get_back=False, headers=admin,
                        json={"role": "customer", "account_id": account["id"]})).json()
    assert seen[("POST", "/v1/tokens")] == f"/v1/tokens/{token['id']}"
    customer = {"Authorization": f"Bearer {token['token']}"}
    await call("POST", "/v1/domains", "/v1/domains", 201, headers=admin,
               json={"name": "a.test", "server_id": server["id"], "account_id": account["id"]})
    cert = (await call("POST", "/v1/certificates", "/v1/certificates", 201, headers=customer,
                       json=upload_body(test_ca.issue(["*.a.test", "a.test"])))).json()
    issued = test_ca.issue(["files.a.test"])
    await call("POST", "/v1/certificates/import", "/v1/certificates/import", 201, headers=customer,
               files={"certificate": ("c.pem", issued.cert_pem), "private_key": ("k.pem", issued.key_pem)})
    await call("POST", "/v1/certificates/self-signed", "/v1/certificates/self-signed", 201, headers=customer,
               json={"names": ["a.test"]})
    await call("PUT", "/v1/domains/{name}/bindings/{service}", "/v1/domains/a.test/bindings/webmail", 201,
               headers=customer, json={"certificate_id": cert["id"]})
    request = (await call("POST", "/v1/certificate-requests", "/v1/certificate-requests", 201, headers=customer,
                          json={"names": ["shop.a.test"]})).json()
    await call("POST", "/v1/certificate-requests/{request_id}/certificate",
               f"/v1/certificate-requests/{request['id']}/certificate", 201, headers=customer,
               json={"certificate_pem": sign_csr(request["csr_pem"], test_ca)})
    enrolment = (await call("POST", "/v1/servers/{server_id}/enrolment-tokens",
                            f"/v1/servers/{server['id']}/enrolment-tokens", 201, get_back=False, headers=admin,
                            json={})).json()
    assert enrolment["id"] in seen[("POST", "/v1/servers/{server_id}/enrolment-tokens")]
    hook = (await call("POST", "/v1/webhooks", "/v1/webhooks", 201, headers=customer,
                       json={"url": "https://1.1.1.1/hooks", "kinds": ["binding.set"]})).json()
    async with context.sessionmaker() as session:  # as if the worker had delivered the bind once
        from app.webhooks.models import WebhookDelivery

        delivery = WebhookDelivery(webhook_id=hook["id"], event_id=1, event_kind="binding.set", body="{}",
                                   status="delivered", attempts=1)
        session.add(delivery)
        await session.commit()
    await call("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
               f"/v1/webhooks/{hook['id']}/deliveries/{delivery.id}/redeliver", 202, headers=customer)
    secret = base64.b64encode(b"0" * 32).decode()
    await call("POST", "/v1/dns-providers", "/v1/dns-providers", 201, headers=admin,
               json={"name": "ns1", "kind": "rfc2136",
                     "settings": {"server": "192.0.2.53", "key_name": "certpost", "key_secret": secret}})
    order = (await call("POST", "/v1/certificate-orders", "/v1/certificate-orders", 202, headers=customer,
                        json={"domain": "a.test", "challenge": "http-01"})).json()
    # As if that order had issued the certificate: it can be renewed now.
    async with context.sessionmaker() as session:
        await session.execute(update(CertificateOrder).values(status="valid"))
        await session.execute(update(Certificate).where(Certificate.id == cert["id"])
                              .values(source="acme", order_id=order["id"]))
        await session.commit()
    await call("POST", "/v1/certificates/{certificate_id}/renew", f"/v1/certificates/{cert['id']}/renew", 202,
               headers=customer)
    await call("POST", "/v1/servers/{server_id}/deployments", f"/v1/servers/{server['id']}/deployments", 202,
               headers=admin)

    assert set(seen) == _created_operations(app), "an operation answering 201/202 is not walked here"


async def test_a_bind_that_replaces_is_200_without_location(client, admin, customer_headers, test_ca):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    first = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
    again = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
    assert first.status_code == 201 and "Location" in first.headers
    assert again.status_code == 200 and "Location" not in again.headers
