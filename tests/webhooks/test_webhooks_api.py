"""The webhook API: who may create what, where a customer's webhook may point, the secret shown once."""

from __future__ import annotations

import pytest

from app.webhooks.models import Webhook
from tests.support.api import assert_problem

PUBLIC = "https://1.1.1.1/hooks"  # a public address; never contacted (these tests run no worker)


async def test_the_secret_is_shown_once_and_stored_sealed(client, admin, context):
    response = await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "kinds": ["certificate.expiring"]},
                                 headers=admin)
    assert response.status_code == 201, response.text
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    hook_id = body["id"]
    for path in (f"/v1/webhooks/{hook_id}", "/v1/webhooks", f"/v1/webhooks/{hook_id}/deliveries"):
        answer = await client.get(path, headers=admin)
        assert answer.status_code == 200 and secret not in answer.text and secret[6:] not in answer.text
    patched = await client.patch(f"/v1/webhooks/{hook_id}", json={"kinds": ["certificate.expired"]}, headers=admin)
    assert patched.status_code == 200 and "secret" not in patched.json()
    async with context.sessionmaker() as session:
        row = await session.get(Webhook, hook_id)
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.__dict__.values())
    assert secret.encode() not in stored and secret[6:].encode() not in stored
    assert (await client.delete(f"/v1/webhooks/{hook_id}", headers=admin)).status_code == 204
    assert_problem(await client.get(f"/v1/webhooks/{hook_id}", headers=admin), 404, "not_found")


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://[::1]/hook", "https://169.254.169.254/latest",
    "https://[::ffff:127.0.0.1]/hook", "https://192.168.1.1/hook", "https://localhost/hook",
    "https://8.8.8.8:8443/hook",  # public, but not port 443
])
async def test_a_customer_cannot_target_private_addresses(client, customer_headers, url):
    _, customer = await customer_headers()
    response = await client.post("/v1/webhooks", json={"url": url, "kinds": ["certificate.expiring"]}, headers=customer)
    problem = assert_problem(response, 422, "webhook_target_not_allowed")
    assert "127.0.0.1" not in problem["detail"] or "127.0.0.1" in url  # nothing resolved is told


@pytest.mark.parametrize("url", ["http://8.8.8.8/hook", "ftp://8.8.8.8/x", "https://user:pw@8.8.8.8/x", "not a url",
                                 "https:///nohost"])
async def test_a_customer_url_must_be_plain_https(client, customer_headers, url):
    _, customer = await customer_headers()
    response = await client.post("/v1/webhooks", json={"url": url, "kinds": ["certificate.expiring"]}, headers=customer)
    assert_problem(response, 422, "invalid_webhook_url")


async def test_a_customer_patch_is_checked_like_a_creation(client, customer_headers, admin, context):
    account_id, customer = await customer_headers()
    response = await client.post("/v1/webhooks", json={"url": PUBLIC, "kinds": ["certificate.expiring"]}, headers=customer)
    assert response.status_code == 201, response.text
    hook = response.json()
    assert hook["account_id"] == account_id
    assert_problem(await client.patch(f"/v1/webhooks/{hook['id']}", json={"url": "https://10.0.0.1/"}, headers=customer),
                   422, "webhook_target_not_allowed")
    off = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=customer)
    assert off.json()["enabled"] is False and off.json()["disabled_reason"] == "manual"
    # The rule follows the webhook, not the caller: an admin editing a customer's webhook cannot
    # store a URL that the worker would then refuse at every attempt.
    for url, code in (("http://8.8.8.8/", "invalid_webhook_url"), ("https://127.0.0.1/", "webhook_target_not_allowed")):
        assert_problem(await client.patch(f"/v1/webhooks/{hook['id']}", json={"url": url}, headers=admin), 422, code)
    assert (await client.get(f"/v1/webhooks/{hook['id']}", headers=customer)).json()["url"] == PUBLIC


async def test_tenants_see_only_their_own_webhooks(client, customer_headers, admin):
    a_id, a = await customer_headers()
    _b_id, b = await customer_headers()
    mine = (await client.post("/v1/webhooks", json={"url": PUBLIC, "kinds": ["certificate.expiring"]}, headers=a)).json()
    # An admin's webhook on A's events (may point anywhere) is the operator's, not A's to see or edit.
    admins = (await client.post("/v1/webhooks", json={"url": "http://10.0.0.5/x", "kinds": ["certificate.expiring"],
                                                      "account_id": a_id}, headers=admin)).json()
    assert [h["id"] for h in (await client.get("/v1/webhooks", headers=a)).json()["items"]] == [mine["id"]]
    assert (await client.get("/v1/webhooks", headers=b)).json()["items"] == []
    assert (await client.get("/v1/webhooks", params={"account_id": a_id}, headers=b)).json()["items"] == []
    for headers, hook in ((b, mine), (a, admins)):
        for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/deliveries")):
            kwargs = {"json": {"enabled": False}} if method == "PATCH" else {}
            response = await client.request(method, f"/v1/webhooks/{hook['id']}{path}", headers=headers, **kwargs)
            assert_problem(response, 404, "not_found")
    assert_problem(await client.post("/v1/webhooks", json={"url": PUBLIC, "kinds": ["certificate.expiring"],
                                                           "account_id": a_id}, headers=b), 403, "forbidden")
    listed = (await client.get("/v1/webhooks", params={"account_id": a_id}, headers=admin)).json()["items"]
    assert {h["id"] for h in listed} == {mine["id"], admins["id"]}


async def test_unknown_kinds_and_accounts_are_refused(client, admin):
    problem = assert_problem(await client.post("/v1/webhooks", json={"url": PUBLIC, "kinds": ["certificate.exploded"]},
                                               headers=admin), 422, "unknown_event_kind")
    assert problem["kind"] == "certificate.exploded"
    huge = assert_problem(await client.post("/v1/webhooks", json={"url": PUBLIC, "kinds": ["x" * 100_000]},
                                            headers=admin), 422, "unknown_event_kind")
    assert len(huge["detail"]) < 300 and len(huge["kind"]) == 100  # not the 100 KB echoed back
    assert_problem(await client.post("/v1/webhooks", json={"url": PUBLIC, "kinds": []}, headers=admin),
                   422, "validation_error")
    assert_problem(await client.post("/v1/webhooks", json={"url": PUBLIC, "kinds": ["certificate.expiring"],
                                                           "account_id": "no-such-account"}, headers=admin),
                   422, "unknown_account")
