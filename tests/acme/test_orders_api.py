"""Certificate orders through the public API and the worker, against real Pebble and BIND."""

from __future__ import annotations

import pytest

from app.kit.time import utc_now
from tests.support.acme_fixtures import controller_using
from tests.support.api import assert_problem, create_domain, create_server, list_all, upload
from tests.support.bind import start_bind, stop_bind
from tests.support.worker import order_finished, work_until

pytestmark = pytest.mark.acme


@pytest.fixture
def acme_ready(context, pebble_server):
    with controller_using(context, pebble_server) as pebble:
        yield pebble


async def make_provider(client, headers, bind, **overrides) -> dict:
    settings = {"server": bind.host, "port": bind.port, "key_name": bind.key_name,
                "key_algorithm": bind.key_algorithm, "key_secret": bind.key_secret, **overrides}
    r = await client.post("/v1/dns-providers", json={"name": "bind", "kind": "rfc2136", "settings": settings}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
async def hosted(client, admin, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "z01.test", server["id"], account_id)
    return server, account_id, customer


async def test_dns_provider_secrets_are_write_only(client, admin, bind_server, customer_headers):
    provider = await make_provider(client, admin, bind_server)
    assert "key_secret" not in provider["settings"] and provider["secrets_set"] == ["key_secret"]
    listed = (await client.get("/v1/dns-providers", headers=admin)).text
    assert bind_server.key_secret not in listed
    _account, customer = await customer_headers()
    # A customer sees the platform's provider (without its secret) and may create its own.
    assert [p["id"] for p in (await client.get("/v1/dns-providers", headers=customer)).json()["items"]] == [provider["id"]]
    r = await client.post("/v1/dns-providers", json={"name": "x", "kind": "rfc2136", "settings": {
        "server": "127.0.0.1", "key_name": "k", "key_secret": "not base64!"}}, headers=admin)
    assert_problem(r, 422, "invalid_dns_provider")
    r = await client.post("/v1/dns-providers", json={"name": "x", "kind": "rfc2136", "settings": {
        "server": "127.0.0.1", "key_name": "k", "key_secret": "c2VjcmV0", "propagation_nameservers": ["ns1.example"]}},
        headers=admin)
    assert_problem(r, 422, "invalid_dns_provider")
    assert_problem(await client.delete(f"/v1/dns-providers/{provider['id']}", headers=customer), 404, "not_found")
    assert (await client.delete(f"/v1/dns-providers/{provider['id']}", headers=admin)).status_code == 204


async def test_wildcard_over_dns01_bound_and_renewed(client, admin, context, acme_ready, bind_server, hosted, txt_at):
    server, account_id, customer = hosted
    provider = await make_provider(client, admin, bind_server)
    r = await client.post("/v1/certificate-orders", json={
        "domain": "z01.test", "wildcard": True, "challenge": "dns-01", "dns_provider_id": provider["id"],
        "bind": ["webmail", "mail"]}, headers=customer)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/certificate-orders/{r.json()['id']}"
    assert r.json()["names"] == ["z01.test", "*.z01.test"] and r.json()["status"] == "pending"
    generation = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"]

    order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert order["status"] == "valid", order["error"]
    assert [a["status"] for a in order["authorizations"]] == ["valid", "valid"]
    cert = (await client.get(f"/v1/certificates/{order['certificate_id']}", headers=customer)).json()
    assert cert["source"] == "acme" and cert["sans"] == ["z01.test", "*.z01.test"] and cert["trusted"]
    assert cert["account_id"] == account_id and cert["renewal_status"] == "scheduled"
    assert {b["hostname"] for b in cert["bindings"]} == {"webmail.z01.test", "mail.z01.test"}
    assert (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"] == generation + 1
    assert txt_at("_acme-challenge.z01.test") == set()

    # Renewal: make it due, let the worker's renewal job run it; material replaced in place.
    from app.certificates.models import Certificate

    async with context.sessionmaker() as session:
        row = await session.get(Certificate, cert["id"])
        assert row.renewal_eligible_at == row.renewal_at > utc_now()  # stored with the issued material
        row.renewal_at = utc_now()
        await session.commit()
    from app.scheduler.worker import Worker

    worker = Worker(context, owner="renewer")

    async def renewed():
        body = (await client.get(f"/v1/certificates/{cert['id']}", headers=customer)).json()
        return body if body["revision"] == 2 and body["renewal_status"] == "scheduled" else None

    after = await work_until(context, renewed, worker=worker)
    assert after["serial"] != cert["serial"] and after["fingerprint_sha256"] != cert["fingerprint_sha256"]
    assert {b["hostname"] for b in after["bindings"]} == {"webmail.z01.test", "mail.z01.test"}
    assert (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"] == generation + 2

    # The worker's changes are in the customer's event log, with the worker as their author.
    events = [e for e in await list_all(client, "/v1/events", customer) if e["actor"]["type"] == "worker"]
    assert [(e["kind"], e["actor"]["id"]) for e in events] == [
        ("certificate.uploaded", "test-worker"), ("binding.set", "test-worker"), ("binding.set", "test-worker"),
        ("order.valid", "test-worker"),
        ("renewal.scheduled", "renewer"), ("certificate.replaced", "renewer"), ("order.valid", "renewer"),
        ("renewal.succeeded", "renewer")]
    assert all(e["account_id"] == account_id and e["actor"]["role"] is None for e in events)
    first, renewal = events[3], events[7]
    assert first["subjects"] == {"order": order["id"], "certificate": cert["id"], "domain": "z01.test"}
    assert first["data"]["names"] == ["z01.test", "*.z01.test"] and first["data"]["purpose"] == "new"
    assert first["data"]["fingerprint_sha256"] == cert["fingerprint_sha256"]
    assert renewal["data"]["previous_fingerprint_sha256"] == cert["fingerprint_sha256"]
    assert renewal["data"]["fingerprint_sha256"] == after["fingerprint_sha256"]
    assert events[4]["subjects"]["certificate"] == cert["id"] and events[4]["subjects"]["order"] == renewal["subjects"]["order"]
    assert "PRIVATE KEY" not in str(events)


async def test_renew_now_endpoint(client, admin, context, acme_ready, bind_server, hosted):
    _server, _account, customer = hosted
    # Wait for the records on an explicitly listed authoritative server (here the same BIND).
    provider = await make_provider(client, admin, bind_server, propagation_nameservers=[f"{bind_server.host}:{bind_server.port}"])
    assert provider["settings"]["propagation_nameservers"] == [f"{bind_server.host}:{bind_server.port}"]
    r = await client.post("/v1/certificate-orders", json={
        "names": ["webmail.z01.test"], "challenge": "dns-01", "dns_provider_id": provider["id"], "key_type": "rsa-2048"},
        headers=customer)
    order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert order["status"] == "valid", order["error"]
    cert_id = order["certificate_id"]
    assert (await client.get(f"/v1/certificates/{cert_id}", headers=customer)).json()["key_type"] == "rsa"
    r = await client.post(f"/v1/certificates/{cert_id}/renew", headers=customer)
    assert r.status_code == 202, r.text
    assert r.json()["purpose"] == "renewal"
    assert_problem(await client.post(f"/v1/certificates/{cert_id}/renew", headers=customer), 409, "order_in_progress")
    renewal = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert renewal["status"] == "valid" and renewal["certificate_id"] == cert_id
    assert (await client.get(f"/v1/certificates/{cert_id}", headers=customer)).json()["revision"] == 2
    (scheduled,) = await list_all(client, "/v1/events", customer, kind="renewal.scheduled")
    assert scheduled["actor"]["type"] == "token" and scheduled["actor"]["role"] == "customer"
    assert scheduled["subjects"] == {"order": r.json()["id"], "certificate": cert_id}


async def test_order_refusals(client, admin, test_ca, bind_server, hosted, customer_headers):
    _server, _account, customer = hosted
    provider = await make_provider(client, admin, bind_server)
    base = {"challenge": "dns-01", "dns_provider_id": provider["id"]}
    cases = [
        ({"domain": "z01.test", "wildcard": True, "challenge": "http-01"}, 422, "wildcard_requires_dns01"),
        ({"names": ["*.z01.test"], "challenge": "http-01"}, 422, "wildcard_requires_dns01"),
        ({**base, "domain": "z02.test"}, 422, "name_not_allowed"),
        ({**base, "names": ["mail.z01.test", "elsewhere.test"]}, 422, "name_not_allowed"),
        ({"domain": "z01.test", "challenge": "dns-01"}, 422, "dns_provider_required"),
        ({"domain": "z01.test", "dns_provider_id": "nope"}, 422, "unknown_dns_provider"),
        ({"domain": "z01.test", "challenge": "http-01"}, 422, "http01_unavailable"),
        ({**base, "domain": "z01.test", "names": ["a.z01.test"]}, 422, "validation_error"),
        ({**base, "domain": "z01.test", "key_type": "dsa"}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        assert_problem(await client.post("/v1/certificate-orders", json=body, headers=customer), status, code)
    # Another customer cannot order names of this customer's domain.
    _other, stranger = await customer_headers()
    assert_problem(await client.post("/v1/certificate-orders", json={**base, "domain": "z01.test"}, headers=stranger), 422, "name_not_allowed")
    uploaded = await upload(client, customer, test_ca.issue(["*.z01.test"]))
    assert_problem(await client.post(f"/v1/certificates/{uploaded['id']}/renew", headers=customer), 409, "not_renewable")
    assert (await client.get("/v1/certificate-orders", headers=customer)).json()["items"] == []


async def _order_and_fail(client, context, customer, provider_id, domain="z01.test"):
    r = await client.post("/v1/certificate-orders", json={
        "domain": domain, "wildcard": True, "challenge": "dns-01", "dns_provider_id": provider_id,
        "bind": ["webmail"]}, headers=customer)
    assert r.status_code == 202, r.text
    order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert order["status"] == "invalid"
    return order


async def test_wrong_tsig_secret(client, admin, context, acme_ready, bind_server, hosted, txt_at):
    _server, _account, customer = hosted
    provider = await make_provider(client, admin, bind_server, key_secret="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    order = await _order_and_fail(client, context, customer, provider["id"])
    assert order["error"]["step"] == "dns_update" and order["error"]["code"] == "dns_tsig_rejected"
    assert order["error"]["message"] and order["error"]["at"]
    assert txt_at("_acme-challenge.z01.test") == set()
    (invalid,) = await list_all(client, "/v1/events", customer, kind="order.invalid")
    assert invalid["subjects"]["order"] == order["id"] and invalid["actor"] == {"type": "worker", "id": "test-worker",
                                                                               "role": None}
    assert invalid["data"]["condition"]["code"] == "dns_tsig_rejected"
    assert invalid["data"]["condition"]["step"] == "dns_update"
    bindings = (await client.get("/v1/domains/z01.test/bindings", headers=customer)).json()
    assert bindings["webmail"]["source"] == "server-default"


async def test_name_the_provider_cannot_update(client, admin, context, acme_ready, bind_server, hosted):
    server, account_id, customer = hosted
    await create_domain(client, admin, "locked.test", server["id"], account_id)
    provider = await make_provider(client, admin, bind_server)
    order = await _order_and_fail(client, context, customer, provider["id"], domain="locked.test")
    assert order["error"]["step"] == "dns_update" and order["error"]["code"] == "dns_update_refused"
    assert (await client.get("/v1/domains/locked.test/bindings", headers=customer)).json()["webmail"]["source"] == "server-default"


async def test_challenge_the_ca_rejects(client, admin, context, acme_ready, bind_server, hosted, txt_at):
    """The provider updates a second, unrelated name server: the records look published, but the
    CA (which asks the real one) finds nothing and rejects the challenge with its own words."""
    _server, _account, customer = hosted
    shadow = start_bind(zones=("z01.test",))
    try:
        provider = await make_provider(client, admin, shadow)
        order = await _order_and_fail(client, context, customer, provider["id"])
    finally:
        stop_bind(shadow)
    error = order["error"]
    assert error["step"] == "validation", error
    assert error["details"]["problem"]["type"].startswith("urn:ietf:params:acme:error:")
    assert error["details"]["problem"]["detail"] and error["message"] and error["at"]
    assert "invalid" in {a["status"] for a in order["authorizations"]}
    assert txt_at("_acme-challenge.z01.test") == set()
    assert (await client.get("/v1/certificates", headers=customer)).json()["items"] == []


async def test_failed_renewal_backs_off_and_keeps_the_material(client, admin, context, acme_ready, bind_server, hosted):
    from app.acme.models import CertificateOrder
    from app.certificates.models import Certificate
    from app.scheduler.worker import Worker

    _server, _account, customer = hosted
    good = await make_provider(client, admin, bind_server)
    r = await client.post("/v1/certificate-orders", json={
        "domain": "z01.test", "wildcard": True, "dns_provider_id": good["id"], "bind": ["webmail"]}, headers=customer)
    order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    cert_id = order["certificate_id"]
    before = (await client.get(f"/v1/certificates/{cert_id}", headers=customer)).json()

    # The zone's TSIG key was rotated on the DNS side: renewals through this provider now fail.
    rotated = await make_provider(client, admin, bind_server, key_secret="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    async with context.sessionmaker() as session:
        (await session.get(CertificateOrder, order["id"])).dns_provider_id = rotated["id"]
        (await session.get(Certificate, cert_id)).renewal_at = utc_now()
        await session.commit()

    async def failed():
        body = (await client.get(f"/v1/certificates/{cert_id}", headers=customer)).json()
        return body if body["renewal_status"] == "failed" else None

    after = await work_until(context, failed, worker=Worker(context, owner="renewal-fails"))
    assert after["renewal_error"]["step"] == "dns_update" and after["renewal_error"]["code"] == "dns_tsig_rejected"
    assert after["renewal_error"]["message"] and after["renewal_error"]["at"]
    failures = await list_all(client, "/v1/events", customer, kind=["renewal.failed", "order.invalid"],
                              subject=cert_id)
    assert [(e["kind"], e["actor"]["id"]) for e in failures] == [("order.invalid", "renewal-fails"),
                                                                 ("renewal.failed", "renewal-fails")]
    assert failures[1]["data"]["attempts"] == 1 and failures[1]["data"]["condition"]["code"] == "dns_tsig_rejected"
    assert after["fingerprint_sha256"] == before["fingerprint_sha256"] and after["revision"] == before["revision"]
    assert after["bindings"] == before["bindings"]
    async with context.sessionmaker() as session:
        row = await session.get(Certificate, cert_id)
        assert row.renewal_attempts == 1 and row.next_renewal_attempt_at > utc_now()
        assert row.renewal_eligible_at == row.next_renewal_attempt_at  # out of the scan until then
    # Backing off: another round starts no new renewal order.
    from app.acme.renewal import schedule_due_renewals

    assert await schedule_due_renewals(context) == 0


async def test_order_replaces_an_uploaded_certificate_in_place(client, admin, context, acme_ready, bind_server, hosted, test_ca):
    _server, _account, customer = hosted
    provider = await make_provider(client, admin, bind_server)
    uploaded = await upload(client, customer, test_ca.issue(["webmail.z01.test"]))
    r = await client.put("/v1/domains/z01.test/bindings/webmail", json={"certificate_id": uploaded["id"]}, headers=customer)
    assert r.status_code == 201
    r = await client.post("/v1/certificate-orders", json={
        "names": ["webmail.z01.test"], "dns_provider_id": provider["id"], "certificate_id": uploaded["id"]}, headers=customer)
    assert r.status_code == 202, r.text
    assert r.json()["purpose"] == "replace"
    order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert order["status"] == "valid" and order["certificate_id"] == uploaded["id"]
    cert = (await client.get(f"/v1/certificates/{uploaded['id']}", headers=customer)).json()
    assert cert["source"] == "acme" and cert["revision"] == 2 and cert["renewal_status"] == "scheduled"
    assert cert["fingerprint_sha256"] != uploaded["fingerprint_sha256"]
    assert [b["hostname"] for b in cert["bindings"]] == ["webmail.z01.test"]


async def test_a_result_that_cannot_be_stored_leaves_no_event_of_it(client, admin, context, acme_ready, bind_server,
                                                                   hosted):
    """The domain goes away while its order runs: storing the certificate, binding it and marking
    the order valid is one transaction, and the bind fails, so the certificate and its
    `certificate.uploaded` event roll back together; only `order.invalid` remains."""
    _server, _account, customer = hosted
    provider = await make_provider(client, admin, bind_server)
    r = await client.post("/v1/certificate-orders", json={
        "domain": "z01.test", "wildcard": True, "dns_provider_id": provider["id"], "bind": ["webmail"]}, headers=customer)
    assert r.status_code == 202, r.text
    assert (await client.delete("/v1/domains/z01.test", headers=admin)).status_code == 204
    order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    assert order["status"] == "invalid" and order["error"]["step"] == "store", order["error"]
    assert (await client.get("/v1/certificates", headers=admin, params={"covers": "z01.test"})).json()["items"] == []
    worker_events = [e for e in await list_all(client, "/v1/events", admin) if e["actor"]["type"] == "worker"]
    assert [e["kind"] for e in worker_events] == ["order.invalid"]
    assert worker_events[0]["data"]["condition"]["code"] == "not_found"
