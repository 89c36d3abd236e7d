"""Keys and CSRs for certificates bought elsewhere (issue 11): generate through the API, sign the
CSR with a CA in the test, import the issued certificate with the request's id, bind it; the
key is checked where it is stored, and never appears in any answer."""

from __future__ import annotations

import asyncio
import re
import subprocess

import pytest
from sqlalchemy import select

from app.certificates.models import Certificate
from app.kit import x509 as kx
from app.kit.crypto import Sealed
from tests.support.api import create_domain, create_server
from tests.support.pki import sign_csr


def no_key_in(text: str) -> None:
    assert "PRIVATE KEY" not in text
    assert "key_ciphertext" not in text and "key_wrapped" not in text


async def _request(client, headers, names, key_type="ecdsa-p256", **extra):
    response = await client.post("/v1/certificate-requests", json={"names": names, "key_type": key_type, **extra},
                                 headers=headers)
    assert response.status_code == 201, response.text
    no_key_in(response.text)
    assert response.headers["Location"] == f"/v1/certificate-requests/{response.json()['id']}"
    return response.json()


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048"])
async def test_generate_sign_import_bind(client, admin, customer_headers, test_intermediate, context, tmp_path,
                                         key_type):
    account, customer = await customer_headers()
    server = await create_server(client, admin)
    await create_domain(client, admin, "shop.test", server["id"], account)
    body = await _request(client, customer, ["Shop.test", "*.shop.test", "shop.test"], key_type, name="shop")
    assert body["status"] == "pending" and body["account_id"] == account
    assert body["names"] == ["shop.test", "*.shop.test"]  # normalised, repeats dropped, order kept

    # OpenSSL accepts the CSR: its signature verifies, CN is the first name, every name a SAN.
    (tmp_path / "req.pem").write_text(body["csr_pem"])
    done = await asyncio.to_thread(
        subprocess.run, ["openssl", "req", "-in", str(tmp_path / "req.pem"), "-verify", "-noout", "-text"],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "verify OK" in done.stdout + done.stderr
    assert "CN=shop.test" in done.stdout.replace(" = ", "=")
    assert re.search(r"DNS:shop\.test, DNS:\*\.shop\.test", done.stdout)
    assert ("id-ecPublicKey" if key_type.startswith("ecdsa") else "rsaEncryption") in done.stdout

    listed = (await client.get("/v1/certificate-requests", params={"status": "pending"}, headers=customer)).json()
    assert [r["id"] for r in listed["items"]] == [body["id"]]
    no_key_in(str(listed))

    issued = sign_csr(body["csr_pem"], test_intermediate)
    response = await client.post(f"/v1/certificate-requests/{body['id']}/certificate",
                                 json={"certificate_pem": issued, "chain_pem": test_intermediate.cert_pem},
                                 headers=customer)
    assert response.status_code == 201, response.text
    no_key_in(response.text)
    cert = response.json()
    assert cert["account_id"] == account and cert["name"] == "shop"
    assert cert["trusted"], cert["trust"]
    assert cert["sans"] == ["shop.test", "*.shop.test"]

    done = (await client.get(f"/v1/certificate-requests/{body['id']}", headers=customer)).json()
    assert done["status"] == "completed" and done["certificate_id"] == cert["id"] and done["completed_at"]
    again = await client.post(f"/v1/certificate-requests/{body['id']}/certificate",
                              json={"certificate_pem": issued}, headers=customer)
    assert again.status_code == 409 and again.json()["code"] == "certificate_request_completed"

    bound = await client.put("/v1/domains/shop.test/bindings/mail", json={"certificate_id": cert["id"]},
                             headers=customer)
    assert bound.status_code in (200, 201), bound.text

    async with context.sessionmaker() as session:
        row = await session.scalar(select(Certificate).where(Certificate.id == cert["id"]))
        key_pem = context.master_key.open(Sealed(row.key_ciphertext, row.key_wrapped, row.master_key_id), row.id)
        from app.certificate_requests.models import CertificateRequest

        request_row = await session.get(CertificateRequest, body["id"])
        assert request_row.key_ciphertext is None and request_row.master_key_id is None  # moved, not copied
    leaf = kx.load_pem_certificates(issued)[0]
    assert kx.key_matches(leaf, kx.load_private_key(key_pem))


async def test_a_certificate_for_another_key_is_refused(client, admin, customer_headers, test_intermediate):
    _account, customer = await customer_headers()
    body = await _request(client, customer, ["other.test"])
    stranger = test_intermediate.issue(["other.test"])  # same names, its own key
    response = await client.post(f"/v1/certificate-requests/{body['id']}/certificate",
                                 json={"certificate_pem": stranger.cert_pem}, headers=customer)
    assert response.status_code == 422 and response.json()["code"] == "certificate_request_key_mismatch"
    no_key_in(response.text)
    garbage = await client.post(f"/v1/certificate-requests/{body['id']}/certificate",
                                json={"certificate_pem": "not a certificate"}, headers=customer)
    assert garbage.status_code == 422 and garbage.json()["code"] == "invalid_certificate"
    still = (await client.get(f"/v1/certificate-requests/{body['id']}", headers=customer)).json()
    assert still["status"] == "pending"


async def test_customers_see_and_touch_only_their_own(client, admin, customer_headers, test_intermediate):
    account_a, alice = await customer_headers()
    account_b, bob = await customer_headers()
    mine = await _request(client, alice, ["alice.test"])
    # An admin may create one for an account; the customer then sees it as its own.
    for_bob = await _request(client, admin, ["bob.test"], "ecdsa-p384", account_id=account_b)
    assert for_bob["account_id"] == account_b

    assert (await client.get(f"/v1/certificate-requests/{mine['id']}", headers=bob)).status_code == 404
    issued = sign_csr(mine["csr_pem"], test_intermediate)
    stolen = await client.post(f"/v1/certificate-requests/{mine['id']}/certificate",
                               json={"certificate_pem": issued}, headers=bob)
    assert stolen.status_code == 404
    assert (await client.delete(f"/v1/certificate-requests/{mine['id']}", headers=bob)).status_code == 404
    bobs = (await client.get("/v1/certificate-requests", headers=bob)).json()["items"]
    assert [r["id"] for r in bobs] == [for_bob["id"]]
    named = (await client.get("/v1/certificate-requests", params={"account_id": account_a}, headers=bob)).json()
    assert named["items"] == []
    other = await client.post("/v1/certificate-requests", json={"names": ["x.test"], "account_id": account_a},
                              headers=bob)
    assert other.status_code == 403

    assert len((await client.get("/v1/certificate-requests", headers=admin)).json()["items"]) == 2
    assert (await client.delete(f"/v1/certificate-requests/{mine['id']}", headers=alice)).status_code == 204
    assert (await client.get(f"/v1/certificate-requests/{mine['id']}", headers=alice)).status_code == 404


async def test_bad_requests_are_refused_with_codes(client, customer_headers, admin):
    _account, customer = await customer_headers()
    bad = await client.post("/v1/certificate-requests", json={"names": ["not a name"]}, headers=customer)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_name"
    suffix = await client.post("/v1/certificate-requests", json={"names": ["a.co.uk", "*.co.uk"]}, headers=customer)
    assert suffix.status_code == 422 and suffix.json()["code"] == "wildcard_public_suffix"
    assert suffix.json()["hostname"] == "*.co.uk"
    weak = await client.post("/v1/certificate-requests", json={"names": ["a.test"], "key_type": "rsa-1024"},
                             headers=customer)
    assert weak.status_code == 422 and weak.json()["code"] == "validation_error"
    unknown = await client.post("/v1/certificate-requests", json={"names": ["a.test"], "account_id": "nope"},
                                headers=admin)
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_account"
    assert (await client.get("/v1/certificate-requests", headers=customer)).json()["items"] == []


async def test_list_pages(client, customer_headers):
    _account, customer = await customer_headers()
    made = [(await _request(client, customer, [f"p{i}.test"]))["id"] for i in range(3)]
    first = (await client.get("/v1/certificate-requests", params={"limit": 2, "count": "true"},
                              headers=customer)).json()
    assert first["total"] == 3 and len(first["items"]) == 2 and first["next_cursor"]
    rest = (await client.get("/v1/certificate-requests", params={"limit": 2, "cursor": first["next_cursor"]},
                             headers=customer)).json()
    assert {r["id"] for r in first["items"] + rest["items"]} == set(made) and rest["next_cursor"] is None


@pytest.mark.parametrize("address", ["192.0.2.1", "2001:db8::1"])
async def test_an_ip_address_is_not_a_name_for_a_csr(client, customer_headers, context, address):
    """A dNSName holding an address is refused by CAs (Baseline Requirements 7.1.2.7.12): a 422
    at once, and no request (no key) is stored."""
    _account, customer = await customer_headers()
    r = await client.post("/v1/certificate-requests", json={"names": ["shop.test", address]}, headers=customer)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_name"
    assert address in r.json()["detail"]
    listed = await client.get("/v1/certificate-requests", headers=customer)
    assert listed.json()["items"] == []
