"""What x509-limbo found (bench/x509_limbo.py, docs/x509.md), pinned with certificates from pki.py."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID

from app.certificates import errors
from app.certificates.material import normalised_sans
from app.domains.rules import check_bindable, client_warning_reasons, server_certificate_usable
from app.kit import x509 as kx
from app.kit.time import expired
from tests.support import pki

NOT_AFTER = datetime(2024, 4, 1, tzinfo=UTC)


@dataclass
class Facts:
    sans: list[str]
    not_before: datetime
    not_after: datetime
    trusted: bool = True
    self_signed: bool = False


@pytest.fixture(scope="module")
def issued():
    ca = pki.CA.create(not_before=datetime(2024, 1, 1, tzinfo=UTC), not_after=datetime(2030, 1, 1, tzinfo=UTC))
    return ca.issue(["mail.example.com"], not_before=datetime(2024, 1, 2, tzinfo=UTC), not_after=NOT_AFTER)


def _facts(issued) -> Facts:
    return Facts(normalised_sans(issued.cert), issued.cert.not_valid_before_utc, issued.cert.not_valid_after_utc)


def test_not_after_is_a_whole_second(issued):
    """rfc5280::validity::notafter-fractional: valid during all of the notAfter second."""
    facts = _facts(issued)
    assert facts.not_after == NOT_AFTER
    for late in (timedelta(0), timedelta(milliseconds=5), timedelta(microseconds=999_999)):
        now = NOT_AFTER + late
        assert not expired(facts.not_after, now)
        check_bindable(facts, "mail.example.com", now)
        assert "certificate_expired" not in client_warning_reasons(facts, "mail.example.com", now)
        assert server_certificate_usable(facts, "mail.example.com", now)


def test_expired_from_the_next_second(issued):
    facts = _facts(issued)
    now = NOT_AFTER + timedelta(seconds=1)
    assert expired(facts.not_after, now)
    with pytest.raises(errors.CertificateExpired):
        check_bindable(facts, "mail.example.com", now)
    assert "certificate_expired" in client_warning_reasons(facts, "mail.example.com", now)
    assert not server_certificate_usable(facts, "mail.example.com", now)


def test_malformed_san_is_invalid_certificate():
    """A SAN that does not parse is a refusal with a code, not a bare ValueError (limbo's SAN cases)."""
    ca = pki.CA.create()
    leaf = pki.certificate_for_public_key(ca, pki.new_key("ec-p256").public_key(), ["mail.example.com"])
    garbage = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x05\x82\x03ab")
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())
        .serial_number(leaf.serial_number)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
        .add_extension(garbage, critical=False)
    )
    broken = builder.sign(ca.key, hashes.SHA256())
    with pytest.raises(kx.InvalidCertificate):
        kx.dns_names(broken)
    with pytest.raises(kx.InvalidCertificate):
        normalised_sans(broken)


def test_trust_is_judged_at_the_given_moment():
    """TrustStore.verifies(now=...): an intermediate that has expired since then fails only later."""
    from app.kit.trust import TrustStore

    root = pki.CA.create(not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2040, 1, 1, tzinfo=UTC))
    ica = root.intermediate("limbo ICA", not_before=datetime(2020, 1, 1, tzinfo=UTC),
                            not_after=datetime(2022, 1, 1, tzinfo=UTC))
    leaf = ica.issue(["mail.example.com"], not_before=datetime(2021, 1, 1, tzinfo=UTC),
                     not_after=datetime(2035, 1, 1, tzinfo=UTC))
    store = TrustStore([root.cert])
    assert store.verifies(leaf.cert, leaf.chain, ["mail.example.com"], now=datetime(2021, 6, 1, tzinfo=UTC))
    assert not store.verifies(leaf.cert, leaf.chain, ["mail.example.com"])  # the clock: 2026 or later
