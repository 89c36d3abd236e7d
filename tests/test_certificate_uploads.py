"""Identical uploads return the existing certificate; uploads warn as binding does."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.certificates.models import Certificate
from tests.support.api import assert_problem, upload_body
from tests.support.pki import self_signed

NOW = datetime.now(UTC).replace(microsecond=0)


async def rows(context, fingerprint: str) -> int:
    async with context.sessionmaker() as session:
        return await session.scalar(
            select(func.count()).select_from(Certificate).where(Certificate.fingerprint_sha256 == fingerprint))


async def test_identical_upload_returns_the_existing_one(client, context, customer_headers, test_ca):
    _a, headers = await customer_headers()
    issued = test_ca.issue(["webmail.a.test"])
    first = await client.post("/v1/certificates", json=upload_body(issued, name="first"), headers=headers)
    assert first.status_code == 201 and first.json()["already_existed"] is False
    again = await client.post("/v1/certificates", json=upload_body(issued, name="second"), headers=headers)
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["id"] == first.json()["id"] and body["already_existed"] is True
    assert body["name"] == "first"  # the existing certificate, as it is
    assert again.headers["content-location"] == f"/v1/certificates/{body['id']}"
    files = {"certificate": ("c.pem", issued.cert_pem), "chain": ("ch.pem", issued.chain_pem or ""),
             "private_key": ("k.pem", issued.key_pem)}
    imported = await client.post("/v1/certificates/import", files=files, headers=headers)
    assert imported.status_code == 200 and imported.json()["id"] == body["id"]
    p12 = await client.post("/v1/certificates/import", files={"pkcs12": ("c.p12", issued.pkcs12(b"pw"))},
                            data={"password": "pw"}, headers=headers)
    assert p12.status_code == 200 and p12.json()["id"] == body["id"]
    encrypted = upload_body(issued, private_key_pem=issued.encrypted_key_pem("s3cret"), key_passphrase="s3cret")
    same_key_other_encoding = await client.post("/v1/certificates", json=encrypted, headers=headers)
    assert same_key_other_encoding.status_code == 200
    assert await rows(context, issued.fingerprint) == 1


async def test_another_owner_gets_its_own_copy(client, context, admin, customer_headers, test_ca):
    _a, a = await customer_headers()
    _b, b = await customer_headers()
    issued = test_ca.issue(["webmail.a.test"])
    created = [await client.post("/v1/certificates", json=upload_body(issued), headers=h) for h in (a, b, admin)]
    assert [r.status_code for r in created] == [201, 201, 201]
    assert len({r.json()["id"] for r in created}) == 3
    platform_again = await client.post("/v1/certificates", json=upload_body(issued), headers=admin)
    assert platform_again.status_code == 200 and platform_again.json()["id"] == created[2].json()["id"]
    assert await rows(context, issued.fingerprint) == 3


async def test_an_unknown_account_is_refused_not_a_500(client, admin, test_ca):
    """An admin naming an account that does not exist: 422 unknown_account (the identical-upload
    path must check it too, or the insert fails on the foreign key; found by schemathesis)."""
    issued = test_ca.issue(["webmail.a.test"])
    r = await client.post("/v1/certificates", json=upload_body(issued, account_id="missing"), headers=admin)
    assert_problem(r, 422, "unknown_account")
    files = {"certificate": ("c.pem", issued.cert_pem), "private_key": ("k.pem", issued.key_pem),
             "account_id": (None, "missing")}
    assert_problem(await client.post("/v1/certificates/import", files=files, headers=admin), 422, "unknown_account")


async def test_another_key_for_the_same_certificate_is_refused(client, customer_headers, test_ca):
    _a, headers = await customer_headers()
    issued = test_ca.issue(["webmail.a.test"])
    other = test_ca.issue(["webmail.a.test"])
    await client.post("/v1/certificates", json=upload_body(issued), headers=headers)
    mismatched = upload_body(issued, private_key_pem=other.key_pem)
    assert_problem(await client.post("/v1/certificates", json=mismatched, headers=headers), 422, "key_mismatch")


async def test_same_certificate_with_another_chain_says_so(client, customer_headers, test_intermediate):
    _a, headers = await customer_headers()
    issued = test_intermediate.issue(["webmail.a.test"])
    bare = await client.post("/v1/certificates", json=upload_body(issued, chain_pem=None), headers=headers)
    assert bare.status_code == 201 and bare.json()["trust"]["reason"] == "unknown_issuer"
    chained = await client.post("/v1/certificates", json=upload_body(issued), headers=headers)
    assert chained.status_code == 200 and chained.json()["id"] == bare.json()["id"]
    assert "chain_differs" in {w["code"] for w in chained.json()["warnings"]}
    assert chained.json()["chain_length"] == 1  # kept; PUT replaces the material
    replaced = await client.put(f"/v1/certificates/{bare.json()['id']}", json=upload_body(issued), headers=headers)
    assert replaced.status_code == 200 and replaced.json()["trusted"] is True


async def test_concurrent_identical_uploads_make_one_row(client, context, customer_headers, test_ca):
    _a, headers = await customer_headers()
    issued = test_ca.issue(["webmail.a.test", "mail.a.test"])
    body = upload_body(issued)
    responses = await asyncio.gather(*[client.post("/v1/certificates", json=body, headers=headers) for _ in range(8)])
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await rows(context, issued.fingerprint) == 1


async def test_replace_with_material_another_certificate_holds(client, customer_headers, test_ca):
    _a, headers = await customer_headers()
    one, two = test_ca.issue(["webmail.a.test"]), test_ca.issue(["webmail.a.test"])
    first = (await client.post("/v1/certificates", json=upload_body(one), headers=headers)).json()
    second = (await client.post("/v1/certificates", json=upload_body(two), headers=headers)).json()
    problem = assert_problem(
        await client.put(f"/v1/certificates/{second['id']}", json=upload_body(one), headers=headers), 409,
        "certificate_exists")
    assert problem["certificate_id"] == first["id"]
    same = await client.put(f"/v1/certificates/{first['id']}", json=upload_body(one), headers=headers)
    assert same.status_code == 200 and same.json()["revision"] == 2


def codes(response) -> list[str]:
    return [w["code"] for w in response.json()["warnings"]]


async def test_upload_warnings(client, admin, test_ca, untrusted_ca, settings):
    async def post(issued):
        response = await client.post("/v1/certificates", json=upload_body(issued), headers=admin)
        assert response.status_code == 201, response.text
        return response

    assert codes(await post(test_ca.issue(["mail.a.test"], days=90))) == []
    expired = await post(test_ca.issue(["mail.a.test"], not_before=NOW - timedelta(minutes=50),
                                       not_after=NOW - timedelta(minutes=10)))
    assert codes(expired) == ["certificate_expired"]
    assert expired.json()["trust"]["reason"] == "expired" and expired.json()["trusted"] is False
    soon = await post(test_ca.issue(["mail.a.test"], days=settings.expiring_days - 1))
    assert codes(soon) == ["certificate_expiring"] and soon.json()["trusted"] is True
    assert codes(await post(test_ca.issue(["mail.a.test"], days=settings.expiring_days + 2))) == []
    assert codes(await post(test_ca.issue(["mail.a.test"], not_before=NOW + timedelta(days=1)))) == [
        "certificate_not_yet_valid"]
    assert codes(await post(self_signed(["mail.a.test"]))) == ["self_signed"]
    untrusted = await post(untrusted_ca.issue(["mail.a.test"], days=5))
    assert codes(untrusted) == ["certificate_untrusted", "certificate_expiring"]
    assert "unknown_issuer" in untrusted.json()["warnings"][0]["message"]
