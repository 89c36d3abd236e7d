"""Uploading, reading, listing, replacing and deleting certificates through the API."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api import assert_problem, create_domain, create_server, upload, upload_body
from tests.support.pki import CA, self_signed

FIELDS = {
    "id", "name", "account_id", "subject", "issuer", "serial", "sans", "not_before", "not_after",
    "fingerprint_sha256", "key_type", "key_bits", "self_signed", "trusted", "chain_length", "source",
    "revision", "bindings", "created_at", "updated_at", "renewal_at", "renewal_status", "renewal_error", "trust",
}
UPLOAD_FIELDS = FIELDS | {"already_existed", "warnings"}


@pytest.mark.parametrize(
    ("key_type", "expected_type", "bits", "trusted"),
    [
        ("rsa-2048", "rsa", 2048, True),
        ("rsa-4096", "rsa", 4096, True),
        ("ec-p256", "ec-p256", 256, True),
        ("ec-p384", "ec-p384", 384, True),
    ],
)
async def test_upload_key_types(client, admin, test_ca, key_type, expected_type, bits, trusted):
    issued = test_ca.issue(["mail.a.test"], key_type=key_type)
    cert = await upload(client, admin, issued, name="a")
    assert set(cert) == UPLOAD_FIELDS
    assert (cert["key_type"], cert["key_bits"], cert["trusted"]) == (expected_type, bits, trusted)
    assert cert["fingerprint_sha256"] == issued.fingerprint
    assert cert["source"] == "upload" and cert["revision"] == 1 and cert["bindings"] == []
    assert cert["self_signed"] is False and cert["chain_length"] == 1


async def test_chain_in_certificate_pem_or_chain_pem(client, admin, test_intermediate):
    issued = test_intermediate.issue(["webmail.a.test"])
    as_fullchain = await upload(client, admin, issued, certificate_pem=issued.fullchain_pem, chain_pem=None)
    # The same certificate again would return the first (an identical upload): read it afresh.
    assert (await client.delete(f"/v1/certificates/{as_fullchain['id']}", headers=admin)).status_code == 204
    separate = await upload(client, admin, issued)
    for cert in (as_fullchain, separate):
        assert cert["chain_length"] == 2 and cert["trusted"] is True
        assert "certpost Test Issuing CA" in cert["issuer"]


async def test_intermediate_missing_is_untrusted(client, admin, test_intermediate):
    cert = await upload(client, admin, test_intermediate.issue(["webmail.a.test"]), chain_pem=None)
    assert cert["trusted"] is False and cert["chain_length"] == 1


async def test_untrusted_and_self_signed(client, admin, untrusted_ca):
    untrusted = await upload(client, admin, untrusted_ca.issue(["mail.a.test"]))
    assert (untrusted["trusted"], untrusted["self_signed"]) == (False, False)
    own = await upload(client, admin, self_signed(["mail.a.test"]))
    assert (own["trusted"], own["self_signed"]) == (False, True)


async def test_sans_normalised_idn_and_wildcard(client, admin, test_ca):
    cert = await upload(client, admin, test_ca.issue(["xn--bcher-kva.test", "*.XN--BCHER-KVA.test"]))
    assert cert["sans"] == ["xn--bcher-kva.test", "*.xn--bcher-kva.test"]
    assert cert["trusted"] is True


async def test_cn_only_certificate_covers_nothing(client, admin, test_ca):
    """RFC 9525 dropped the subject-CN fallback: a certificate without a SAN has no names."""
    cert = await upload(client, admin, test_ca.issue(["mail.a.test"], san=False))
    assert cert["sans"] == []
    listed = (await client.get("/v1/certificates?covers=mail.a.test", headers=admin)).json()["items"]
    assert listed == []


async def test_encrypted_key(client, admin, test_ca):
    issued = test_ca.issue(["mail.a.test"])
    body = upload_body(issued, private_key_pem=issued.encrypted_key_pem("s3cret"), key_passphrase="s3cret")
    assert (await client.post("/v1/certificates", json=body, headers=admin)).status_code == 201
    body.pop("key_passphrase")
    assert_problem(await client.post("/v1/certificates", json=body, headers=admin), 422, "key_passphrase")
    body["key_passphrase"] = "wrong"
    assert_problem(await client.post("/v1/certificates", json=body, headers=admin), 422, "key_passphrase")
    plain = upload_body(issued, key_passphrase="not-needed")
    assert_problem(await client.post("/v1/certificates", json=plain, headers=admin), 422, "key_passphrase")


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("certificate_pem", "hello", "invalid_certificate"),
        ("certificate_pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "invalid_certificate"),
        ("private_key_pem", "hello", "invalid_key"),
        ("private_key_pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "invalid_key"),
    ],
)
async def test_unreadable_material(client, admin, test_ca, field, value, code):
    body = upload_body(test_ca.issue(["mail.a.test"]), **{field: value})
    assert_problem(await client.post("/v1/certificates", json=body, headers=admin), 422, code)


async def test_key_mismatch(client, admin, test_ca):
    a, b = test_ca.issue(["mail.a.test"]), test_ca.issue(["mail.a.test"])
    body = upload_body(a, private_key_pem=b.key_pem)
    problem = assert_problem(await client.post("/v1/certificates", json=body, headers=admin), 422, "key_mismatch")
    assert "PRIVATE KEY" not in str(problem)


async def test_chain_out_of_order_or_unrelated(client, admin, test_ca, untrusted_ca):
    inter = test_ca.intermediate("Mid A")
    issuing = inter.intermediate("Mid B")
    issued = issuing.issue(["mail.a.test"])
    good = await client.post("/v1/certificates", json=upload_body(issued), headers=admin)
    assert good.status_code == 201 and good.json()["chain_length"] == 3
    assert (await client.delete(f"/v1/certificates/{good.json()['id']}", headers=admin)).status_code == 204
    swapped = "-----END CERTIFICATE-----\n".join(reversed([c for c in issued.chain_pem.split("-----END CERTIFICATE-----\n") if c])) + "-----END CERTIFICATE-----\n"
    # RFC 8446 section 4.4.2: issuers in any order; the verifier builds the path, the order is kept.
    r = await client.post("/v1/certificates", json=upload_body(issued, chain_pem=swapped), headers=admin)
    assert r.status_code == 201 and r.json()["trusted"] is True and r.json()["chain_length"] == 3
    unrelated = upload_body(issued, chain_pem=untrusted_ca.cert_pem)
    assert_problem(await client.post("/v1/certificates", json=unrelated, headers=admin), 422, "invalid_chain")


async def test_chain_longer_than_ten(client, admin):
    ca = CA.create("Deep Root")
    for depth in range(10):
        ca = ca.intermediate(f"Deep {depth}")
    issued = ca.issue(["mail.a.test"])  # leaf + 10 intermediates = 11
    problem = assert_problem(await client.post("/v1/certificates", json=upload_body(issued), headers=admin), 422, "invalid_chain")
    assert "at most 10" in problem["detail"]


async def test_pkcs12_import(client, admin, test_intermediate):
    issued = test_intermediate.issue(["webmail.a.test", "mail.a.test"], key_type="rsa-2048")
    archive = issued.pkcs12(b"p12-pass")
    files = {"pkcs12": ("bundle.p12", archive, "application/x-pkcs12")}
    r = await client.post("/v1/certificates/import", files=files, data={"password": "p12-pass", "name": "p12"}, headers=admin)
    assert r.status_code == 201, r.text
    cert = r.json()
    assert cert["fingerprint_sha256"] == issued.fingerprint and cert["chain_length"] == 2 and cert["trusted"]
    for data in ({"password": "wrong"}, {}):
        r = await client.post("/v1/certificates/import", files=files, data=data, headers=admin)
        assert_problem(r, 422, "key_passphrase")
    r = await client.post("/v1/certificates/import", files={"pkcs12": ("x.p12", b"not a p12", "application/x-pkcs12")}, headers=admin)
    assert_problem(r, 422, "invalid_certificate")


async def test_pem_files_import(client, admin, test_intermediate):
    issued = test_intermediate.issue(["webmail.a.test"])
    files = {
        "certificate": ("cert.pem", issued.cert_pem.encode()),
        "chain": ("chain.pem", issued.chain_pem.encode()),
        "private_key": ("key.pem", issued.encrypted_key_pem("pw").encode()),
    }
    r = await client.post("/v1/certificates/import", files=files, data={"key_passphrase": "pw"}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["chain_length"] == 2
    r = await client.post("/v1/certificates/import", files={"certificate": files["certificate"]}, headers=admin)
    assert_problem(r, 422, "invalid_certificate")


async def test_self_signed_endpoint(client, admin):
    r = await client.post("/v1/certificates/self-signed", json={"names": ["Mail.Bücher.test", "*.a.test"]}, headers=admin)
    assert r.status_code == 201, r.text
    cert = r.json()
    assert cert["sans"] == ["mail.xn--bcher-kva.test", "*.a.test"]
    assert cert["self_signed"] and cert["source"] == "self-signed" and cert["key_type"] == "ec-p256"
    assert_problem(await client.post("/v1/certificates/self-signed", json={"names": ["bad name"]}, headers=admin), 422, "invalid_name")


async def test_list_filters_and_pagination(client, admin, test_ca):
    now = datetime.now(UTC)
    wildcard = await upload(client, admin, test_ca.issue(["a.test", "*.a.test"], days=10))
    exact = await upload(client, admin, test_ca.issue(["mail.a.test"], days=200))
    await upload(client, admin, test_ca.issue(["mail.b.test"], days=200))

    async def ids(**params):
        r = await client.get("/v1/certificates", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return {c["id"] for c in r.json()["items"]}

    assert await ids(covers="MAIL.a.test.") == {wildcard["id"], exact["id"]}
    assert await ids(covers="a.test") == {wildcard["id"]}
    assert await ids(covers="x.mail.a.test") == set()
    assert await ids(expires_before=(now + timedelta(days=30)).isoformat()) == {wildcard["id"]}
    assert await ids(covers="mail.a.test", expires_before=(now + timedelta(days=30)).isoformat()) == {wildcard["id"]}

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/certificates", params=params, headers=admin)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 3
    assert_problem(await client.get("/v1/certificates", params={"cursor": "garbage"}, headers=admin), 422, "invalid_cursor")
    assert_problem(await client.get("/v1/certificates", params={"covers": "not a name"}, headers=admin), 422, "invalid_filter")


async def test_replace_keeps_bindings_and_checks_names(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    first = await upload(client, customer, test_ca.issue(["webmail.a.test", "mail.a.test"]))
    r = await client.put("/v1/domains/a.test/bindings/webmail", json={"certificate_id": first["id"]}, headers=customer)
    assert r.status_code == 201, r.text
    generation = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"]

    narrower = test_ca.issue(["mail.a.test"])
    r = await client.put(f"/v1/certificates/{first['id']}", json=upload_body(narrower), headers=customer)
    body = assert_problem(r, 422, "hostname_not_covered")
    assert body["hostname"] == "webmail.a.test"

    now = datetime.now(UTC)
    expired = test_ca.issue(["webmail.a.test", "mail.a.test"], not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    r = await client.put(f"/v1/certificates/{first['id']}", json=upload_body(expired), headers=customer)
    assert_problem(r, 422, "certificate_expired")

    renewed = test_ca.issue(["webmail.a.test", "mail.a.test"])
    r = await client.put(f"/v1/certificates/{first['id']}", json=upload_body(renewed), headers=customer)
    assert r.status_code == 200, r.text
    cert = r.json()
    assert cert["revision"] == 2 and cert["fingerprint_sha256"] == renewed.fingerprint
    assert [b["hostname"] for b in cert["bindings"]] == ["webmail.a.test"]
    after = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"]
    assert after == generation + 1


async def test_delete_refused_while_bound(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
    assert_problem(await client.delete(f"/v1/certificates/{cert['id']}", headers=customer), 409, "certificate_in_use")
    assert_problem(await client.delete(f"/v1/certificates/{server['mail_certificate_id']}", headers=admin), 409, "certificate_in_use")
    assert (await client.delete("/v1/domains/a.test/bindings/mail", headers=customer)).status_code == 204
    assert (await client.delete(f"/v1/certificates/{cert['id']}", headers=customer)).status_code == 204
    assert_problem(await client.get(f"/v1/certificates/{cert['id']}", headers=customer), 404, "not_found")
