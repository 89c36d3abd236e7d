"""A server's webmail default certificate (PUT/DELETE /v1/servers/{id}/webmail-certificate).

What HTTPS presents without SNI, for the server's host name and for every webmail name without
a binding: the chosen certificate, else the server-wide mail certificate. The rules are those of
the server-wide mail certificate: administrators only, a platform certificate, in date, covering
the host name; warnings as a binding gives them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api import assert_problem, create_domain, create_server, upload, upload_body

HOST = "mx1.hosting.test"


@pytest.fixture
async def hosted(client, admin, customer_headers):
    server = await create_server(client, admin, hostname=HOST)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    return await get_server(client, admin, server["id"]), account_id, customer


async def put_webmail(client, headers, server_id, cert_id):
    return await client.put(f"/v1/servers/{server_id}/webmail-certificate", json={"certificate_id": cert_id},
                            headers=headers)


async def get_server(client, admin, server_id) -> dict:
    return (await client.get(f"/v1/servers/{server_id}", headers=admin)).json()


async def preview(client, admin, server_id) -> dict:
    return (await client.get(f"/v1/servers/{server_id}/config", headers=admin)).json()


async def webmail_status(client, customer, domain="a.test") -> dict:
    return (await client.get(f"/v1/domains/{domain}/tls", headers=customer)).json()["webmail"]


async def test_default_follows_the_server_wide_mail_certificate(client, admin, test_ca, hosted):
    server, _account, customer = hosted
    assert server["webmail_certificate_id"] is None
    assert server["webmail_default_certificate_id"] == server["mail_certificate_id"] == server["default_certificate_id"]

    trusted = await upload(client, admin, test_ca.issue([HOST]))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": trusted["id"]},
                         headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["webmail_certificate_id"] is None
    assert r.json()["webmail_default_certificate_id"] == trusted["id"]
    config = await preview(client, admin, server["id"])
    assert config["webmail_default"] == config["server_certificate"] == trusted["fingerprint_sha256"]
    status = await webmail_status(client, customer)
    assert status["source"] == "server-default" and status["certificate"]["id"] == trusted["id"]
    assert status["reasons"] == ["hostname_not_covered"]  # trusted, but for the host name only


async def test_set_change_and_unset(client, admin, test_ca, untrusted_ca, hosted):
    server, _account, customer = hosted
    start = server["desired_generation"]
    chosen = await upload(client, admin, test_ca.issue([HOST, "webmail.hosting.test"]))
    r = await put_webmail(client, admin, server["id"], chosen["id"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["certificate_warnings"] == []
    assert body["webmail_certificate_id"] == body["webmail_default_certificate_id"] == chosen["id"]
    assert body["mail_certificate_id"] == server["mail_certificate_id"]  # mail is not touched
    assert body["desired_generation"] == start + 1
    config = await preview(client, admin, server["id"])
    assert config["webmail_default"] == chosen["fingerprint_sha256"]
    assert config["server_certificate"] != chosen["fingerprint_sha256"]
    status = await webmail_status(client, customer)
    assert status["source"] == "server-default" and status["certificate"]["id"] == chosen["id"]
    bindings = (await client.get("/v1/domains/a.test/bindings", headers=customer)).json()
    assert bindings["webmail"]["source"] == "server-default" and bindings["webmail"]["certificate_id"] == chosen["id"]
    assert bindings["mail"]["certificate_id"] == server["mail_certificate_id"]
    cert = (await client.get(f"/v1/certificates/{chosen['id']}", headers=admin)).json()
    assert [(b["kind"], b["hostname"], b["server_id"]) for b in cert["bindings"]] == [
        ("server-webmail", HOST, server["id"])
    ]

    # The same again changes nothing; another certificate is a new generation, with its warnings.
    r = await put_webmail(client, admin, server["id"], chosen["id"])
    assert r.status_code == 200 and r.json()["desired_generation"] == start + 1
    untrusted = await upload(client, admin, untrusted_ca.issue([HOST], days=10))
    r = await put_webmail(client, admin, server["id"], untrusted["id"])
    assert r.status_code == 200, r.text
    assert [w["code"] for w in r.json()["certificate_warnings"]] == ["certificate_untrusted", "certificate_expiring"]
    assert r.json()["desired_generation"] == start + 2
    assert (await preview(client, admin, server["id"]))["webmail_default"] == untrusted["fingerprint_sha256"]

    # Back to the default: the server-wide mail certificate.
    r = await client.delete(f"/v1/servers/{server['id']}/webmail-certificate", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["webmail_certificate_id"] is None
    assert r.json()["webmail_default_certificate_id"] == server["mail_certificate_id"]
    assert r.json()["desired_generation"] == start + 3
    config = await preview(client, admin, server["id"])
    assert config["webmail_default"] == config["server_certificate"]
    assert (await webmail_status(client, customer))["certificate"]["id"] == server["mail_certificate_id"]
    assert_problem(await client.delete(f"/v1/servers/{server['id']}/webmail-certificate", headers=admin),
                   404, "webmail_certificate_not_set")
    # The certificates stay, and are deletable again.
    assert (await client.delete(f"/v1/certificates/{untrusted['id']}", headers=admin)).status_code == 204


async def test_choosing_the_mail_certificate_itself_deploys_nothing_new(client, admin, hosted):
    server, _account, _customer = hosted
    r = await put_webmail(client, admin, server["id"], server["mail_certificate_id"])
    assert r.status_code == 200, r.text
    assert [w["code"] for w in r.json()["certificate_warnings"]] == ["self_signed"]
    assert r.json()["webmail_certificate_id"] == server["mail_certificate_id"]
    assert r.json()["desired_generation"] == server["desired_generation"]  # the same certificate is served
    r = await client.delete(f"/v1/servers/{server['id']}/webmail-certificate", headers=admin)
    assert r.status_code == 200 and r.json()["desired_generation"] == server["desired_generation"]


async def test_refusals(client, admin, test_ca, hosted):
    server, account_id, customer = hosted
    start = server["desired_generation"]
    good = await upload(client, admin, test_ca.issue([HOST]))
    # Administrators only, to set and to unset.
    assert_problem(await put_webmail(client, customer, server["id"], good["id"]), 403, "forbidden")
    assert_problem(await client.delete(f"/v1/servers/{server['id']}/webmail-certificate", headers=customer),
                   403, "forbidden")
    assert_problem(await put_webmail(client, admin, server["id"], "00000000-0000-0000-0000-000000000000"),
                   404, "not_found")
    assert_problem(await put_webmail(client, admin, "00000000-0000-0000-0000-000000000000", good["id"]),
                   404, "not_found")
    # A customer's certificate, even one for the host name, never becomes a server default.
    theirs = await upload(client, customer, test_ca.issue([HOST, "webmail.a.test"]))
    body = assert_problem(await put_webmail(client, admin, server["id"], theirs["id"]), 422, "certificate_not_platform")
    assert account_id not in body["detail"]
    other = await upload(client, admin, test_ca.issue([HOST]), account_id=account_id)
    assert_problem(await put_webmail(client, admin, server["id"], other["id"]), 422, "certificate_not_platform")
    # It is presented for the host name, so it must cover it (a webmail name is not enough).
    webmail_only = await upload(client, admin, test_ca.issue(["webmail.a.test"]))
    body = assert_problem(await put_webmail(client, admin, server["id"], webmail_only["id"]), 422,
                          "hostname_not_covered")
    assert body["hostname"] == HOST
    now = datetime.now(UTC)
    expired = await upload(client, admin, test_ca.issue([HOST], not_before=now - timedelta(days=100),
                                                        not_after=now - timedelta(days=1)))
    assert_problem(await put_webmail(client, admin, server["id"], expired["id"]), 422, "certificate_expired")
    r = await client.put(f"/v1/servers/{server['id']}/webmail-certificate", json={"id": good["id"]}, headers=admin)
    assert_problem(r, 422, "validation_error")
    after = await get_server(client, admin, server["id"])
    assert after["webmail_certificate_id"] is None and after["desired_generation"] == start


async def test_in_use_certificate_is_kept_and_replaced_with_care(client, admin, test_ca, hosted):
    server, _account, _customer = hosted
    chosen = await upload(client, admin, test_ca.issue([HOST]))
    assert (await put_webmail(client, admin, server["id"], chosen["id"])).status_code == 200
    body = assert_problem(await client.delete(f"/v1/certificates/{chosen['id']}", headers=admin), 409,
                          "certificate_in_use")
    assert HOST in body["detail"]
    # Replacing its material keeps it, if the new material still covers the host name.
    r = await client.put(f"/v1/certificates/{chosen['id']}", json=upload_body(test_ca.issue(["other.hosting.test"])),
                         headers=admin)
    assert_problem(r, 422, "hostname_not_covered")
    generation = (await get_server(client, admin, server["id"]))["desired_generation"]
    renewed = test_ca.issue([HOST])
    r = await client.put(f"/v1/certificates/{chosen['id']}", json=upload_body(renewed), headers=admin)
    assert r.status_code == 200, r.text
    assert (await preview(client, admin, server["id"]))["webmail_default"] == renewed.fingerprint
    assert (await get_server(client, admin, server["id"]))["desired_generation"] == generation + 1


async def test_server_delete_keeps_an_uploaded_webmail_default(client, admin, test_ca, hosted):
    server, _account, _customer = hosted
    chosen = await upload(client, admin, test_ca.issue([HOST]))
    assert (await put_webmail(client, admin, server["id"], chosen["id"])).status_code == 200
    assert (await client.delete("/v1/domains/a.test", headers=admin)).status_code == 204
    assert (await client.delete(f"/v1/servers/{server['id']}", headers=admin)).status_code == 204
    # The self-signed registration certificate went with the server; the uploaded one stays, free.
    items = (await client.get("/v1/certificates", headers=admin)).json()["items"]
    assert [c["id"] for c in items] == [chosen["id"]]
    assert (await client.delete(f"/v1/certificates/{chosen['id']}", headers=admin)).status_code == 204
