"""Self-test of the test PKI in tests/support/pki.py."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from tests.support.pki import CA, KEY_TYPES, Issued, new_key, self_signed, write_pem

NAMES = ["mail.a.test", "*.a.test", "xn--bcher-kva.test"]


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


@pytest.fixture(scope="module")
def root() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def inter(root: CA) -> CA:
    return root.intermediate("certpost Test Intermediate")


def test_new_key_types_and_rsa_cache():
    expected = {
        "rsa-2048": (rsa.RSAPrivateKey, 2048),
        "rsa-4096": (rsa.RSAPrivateKey, 4096),
        "ec-p256": (ec.EllipticCurvePrivateKey, 256),
        "ec-p384": (ec.EllipticCurvePrivateKey, 384),
        "ed25519": (ed25519.Ed25519PrivateKey, None),
    }
    assert set(KEY_TYPES) == set(expected)
    for key_type, (cls, size) in expected.items():
        key = new_key(key_type)
        assert isinstance(key, cls)
        if size:
            assert key.key_size == size
    assert new_key("rsa-2048") is new_key("rsa-2048")
    assert new_key("rsa-2048", fresh=True) is not new_key("rsa-2048")
    assert new_key() is not new_key()  # EC keys are never cached
    assert isinstance(new_key(), ec.EllipticCurvePrivateKey)
    with pytest.raises(ValueError):
        new_key("dsa-1024")


def test_root_and_intermediate(root: CA, inter: CA):
    assert root.parent is None and root.root is root.cert and root.chain == []
    assert root.cert.subject == root.cert.issuer
    assert root.cert.subject.rfc4514_string() == "CN=certpost Test Root CA"
    root.cert.verify_directly_issued_by(root.cert)
    for ca in (root, inter):
        assert ext(ca.cert, x509.BasicConstraints).value.ca is True
        ku = ext(ca.cert, x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
        ext(ca.cert, x509.SubjectKeyIdentifier)
    inter.cert.verify_directly_issued_by(root.cert)
    aki = ext(inter.cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(root.cert, x509.SubjectKeyIdentifier).value.digest
    assert inter.root is root.cert and inter.chain == [inter.cert]
    assert root.cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert x509.load_pem_x509_certificate(inter.cert_pem.encode()) == inter.cert


@pytest.mark.parametrize("key_type", ["rsa-2048", "ec-p384", "ed25519"])
def test_issue_verifies_as_server_cert(inter: CA, root: CA, key_type: str):
    issued = inter.issue(NAMES, key_type=key_type)
    cert = issued.cert
    assert issued.chain == [inter.cert] and issued.root is root.cert
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NAMES[0]
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment == (key_type == "rsa-2048")
    assert ext(cert, x509.BasicConstraints).value.ca is False
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(inter.cert, x509.SubjectKeyIdentifier).value.digest
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.AuthorityInformationAccess)
    now = datetime.now(UTC)
    assert abs(cert.not_valid_before_utc - (now - timedelta(hours=1))) < timedelta(seconds=5)
    assert abs(cert.not_valid_after_utc - (now + timedelta(days=90))) < timedelta(seconds=5)
    cert.verify_directly_issued_by(inter.cert)
    if key_type != "ed25519":  # the WebPKI policy takes RSA and ECDSA keys only
        verifier = PolicyBuilder().store(Store([root.cert]))
        for name in ("mail.a.test", "imap.a.test", "xn--bcher-kva.test"):
            path = verifier.build_server_verifier(x509.DNSName(name)).verify(cert, issued.chain)
            assert path == [cert, inter.cert, root.cert]


def test_ed25519_and_rsa_cas():
    for key_type in ("ed25519", "rsa-2048"):
        ca = CA.create(f"{key_type} root", key_type=key_type)
        issued = ca.issue(["x.test"], key_type=key_type)
        issued.cert.verify_directly_issued_by(ca.cert)
        assert issued.key.public_key() != ca.key.public_key()  # no shared cached RSA key
        assert issued.chain == [] and issued.chain_pem == ""


def test_issue_options(root: CA):
    key = new_key("ec-p256")
    nb = datetime(2020, 1, 1, tzinfo=UTC)
    na = datetime(2020, 4, 1, tzinfo=UTC)
    old = root.issue(
        ["old.test"], key=key, not_before=nb, not_after=na, serial=4242, ocsp_less=False
    )
    assert old.key is key and old.cert.serial_number == 4242
    assert (old.cert.not_valid_before_utc, old.cert.not_valid_after_utc) == (nb, na)
    aia = ext(old.cert, x509.AuthorityInformationAccess).value
    assert aia[0].access_method == x509.AuthorityInformationAccessOID.OCSP
    bare = root.issue(["bare.test", "other.test"], san=False, days=1)
    assert bare.cert.subject.rfc4514_string() == "CN=bare.test"
    with pytest.raises(x509.ExtensionNotFound):
        ext(bare.cert, x509.SubjectAlternativeName)
    assert bare.cert.not_valid_after_utc - datetime.now(UTC) < timedelta(days=1)
    named = root.issue(["n.test"], cn="Custom CN")
    assert named.cert.subject.rfc4514_string() == "CN=Custom CN"
    empty = root.issue(["e.test"], cn="")
    assert len(empty.cert.subject) == 0
    assert ext(empty.cert, x509.SubjectAlternativeName).critical
    expired = root.issue(["exp.test"], not_after=datetime.now(UTC) - timedelta(days=1))
    assert expired.cert.not_valid_before_utc < expired.cert.not_valid_after_utc


def test_issued_serialisations(inter: CA):
    issued = inter.issue(["p.test"], key_type="rsa-2048")
    assert isinstance(issued, Issued)
    assert x509.load_pem_x509_certificate(issued.cert_pem.encode()) == issued.cert
    key = serialization.load_pem_private_key(issued.key_pem.encode(), None)
    assert issued.key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert key.public_key() == issued.cert.public_key()
    assert x509.load_pem_x509_certificates(issued.chain_pem.encode()) == [inter.cert]
    full = x509.load_pem_x509_certificates(issued.fullchain_pem.encode())
    assert full == [issued.cert, inter.cert]
    enc = issued.encrypted_key_pem(b"s3cret")
    assert enc.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (
        serialization.load_pem_private_key(enc.encode(), b"s3cret").public_key() == key.public_key()
    )
    for password in (b"pw", None):
        p12 = pkcs12.load_pkcs12(issued.pkcs12(password), password)
        assert p12.cert.certificate == issued.cert and p12.cert.friendly_name == b"certpost"
        assert [c.certificate for c in p12.additional_certs] == [inter.cert]
        assert p12.key.public_key() == key.public_key()
    assert issued.der == issued.cert.public_bytes(serialization.Encoding.DER)
    assert issued.fingerprint == hashlib.sha256(issued.der).hexdigest()


def test_self_signed_and_write_pem(tmp_path, root: CA):
    ss = self_signed(["self.test", "*.self.test"], key_type="ed25519", days=10)
    assert ss.root is None and ss.chain == [] and ss.chain_pem == ""
    assert ss.cert.subject == ss.cert.issuer
    ss.cert.verify_directly_issued_by(ss.cert)
    assert ss.fullchain_pem == ss.cert_pem
    assert ss.pkcs12(None)  # ed25519 keys serialise into PKCS#12 too
    path = write_pem(tmp_path / "bundle.pem", ss.cert_pem, root.cert_pem)
    assert x509.load_pem_x509_certificates(path.read_bytes()) == [ss.cert, root.cert]
