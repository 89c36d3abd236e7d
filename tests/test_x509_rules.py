"""X.509 as clients judge it: path building from every supplied issuer, inclusive notAfter,
public-suffix wildcards, platform-only server-wide certificates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from app.certificates import errors
from app.domains import rules
from tests.support.api import assert_problem, create_server, upload, upload_body
from tests.support.pki import CA


def _cross_signed(ca: CA, other_root: CA) -> x509.Certificate:
    """``ca``'s certificate re-issued by ``other_root``: same subject and key, another issuer."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca.cert.subject)
        .issuer_name(other_root.cert.subject)
        .public_key(ca.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca.cert.not_valid_before_utc)
        .not_valid_after(ca.cert.not_valid_after_utc)
    )
    for ext in ca.cert.extensions:
        if not isinstance(ext.value, x509.AuthorityKeyIdentifier):
            builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.sign(other_root.key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


async def test_cross_signed_alternate_first_still_trusted(client, admin, test_ca, untrusted_ca):
    issuing = test_ca.intermediate("Cross Issuing")
    alternate = _cross_signed(issuing, untrusted_ca)
    issued = issuing.issue(["mail.a.test"])
    body = upload_body(issued, chain_pem=_pem(alternate, issuing.cert))
    r = await client.post("/v1/certificates", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["trusted"] is True and r.json()["chain_length"] == 3  # kept as given for serving


async def test_pkcs12_keeps_alternates_for_the_verifier(client, admin, test_ca, untrusted_ca):
    issuing = test_ca.intermediate("Cross Issuing P12")
    alternate = _cross_signed(issuing, untrusted_ca)
    issued = issuing.issue(["mail.a.test"])
    archive = pkcs12.serialize_key_and_certificates(
        b"x", issued.key, issued.cert, [alternate, issuing.cert], serialization.NoEncryption()
    )
    r = await client.post("/v1/certificates/import", files={"pkcs12": ("x.p12", archive, "application/x-pkcs12")},
                          headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["trusted"] is True and r.json()["chain_length"] == 3


async def test_root_then_intermediate_trusted(client, admin, test_ca):
    issuing = test_ca.intermediate("Swapped Issuing")
    issued = issuing.issue(["mail.a.test"])
    r = await client.post("/v1/certificates", json=upload_body(issued, chain_pem=_pem(test_ca.cert, issuing.cert)),
                          headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["trusted"] is True


@dataclass
class Facts:
    sans: list[str]
    not_before: datetime
    not_after: datetime
    trusted: bool = True
    self_signed: bool = False


def test_not_after_is_inclusive():
    """RFC 5280 section 4.1.2.5: valid from notBefore through notAfter, both included."""
    end = datetime(2030, 1, 1, tzinfo=UTC)
    cert = Facts(["mail.a.test"], end - timedelta(days=90), end)
    rules.check_bindable(cert, "mail.a.test", end)  # at exactly notAfter: valid
    assert rules.client_warning_reasons(cert, "mail.a.test", end) == []
    assert rules.server_certificate_usable(cert, "mail.a.test", end)
    with pytest.raises(errors.CertificateExpired):
        rules.check_bindable(cert, "mail.a.test", end + timedelta(seconds=1))
    assert rules.client_warning_reasons(cert, "mail.a.test", end + timedelta(seconds=1)) == ["certificate_expired"]


def test_public_suffix_wildcard_refused_with_its_code():
    cert = Facts(["*.co.uk"], datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))
    with pytest.raises(errors.WildcardPublicSuffix):
        rules.check_bindable(cert, "mx1.co.uk", datetime(2030, 1, 1, tzinfo=UTC))


async def test_server_wide_certificate_rules(client, admin, test_ca, customer_headers):
    server = await create_server(client, admin, name="psl", hostname="certpost-mx.co.uk")
    wildcard = await upload(client, admin, test_ca.issue(["*.co.uk"]))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": wildcard["id"]},
                         headers=admin)
    assert_problem(r, 422, "wildcard_public_suffix")

    account_id, _customer = await customer_headers()
    owned = await upload(client, admin, test_ca.issue(["certpost-mx.co.uk"]), account_id=account_id)
    assert owned["account_id"] == account_id
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": owned["id"]},
                         headers=admin)
    assert_problem(r, 422, "certificate_not_platform")
    detail = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
    assert detail["mail_certificate_id"] != owned["id"]

    platform = await upload(client, admin, test_ca.issue(["certpost-mx.co.uk"]))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": platform["id"]},
                         headers=admin)
    assert r.status_code == 200, r.text


async def test_customer_cannot_replace_a_server_wide_certificate(client, admin, context, test_ca, customer_headers):
    """A row made server-wide before the platform-only rule: its owner still cannot replace it."""
    from app.servers.models import Server

    account_id, customer = await customer_headers()
    server = await create_server(client, admin, name="old", hostname="mx9.hosting.test")
    owned = await upload(client, admin, test_ca.issue(["mx9.hosting.test"]), account_id=account_id)
    async with context.sessionmaker() as session:
        row = await session.get(Server, server["id"])
        row.mail_certificate_id = owned["id"]
        await session.commit()
    r = await client.put(f"/v1/certificates/{owned['id']}", json=upload_body(test_ca.issue(["mx9.hosting.test"])),
                         headers=customer)
    assert_problem(r, 403, "certificate_server_wide")


