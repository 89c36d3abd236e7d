"""Reading submitted certificate material and applying the upload rules: pure functions.

Input arrives as PEM text (leaf first, then its issuers; RFC 7468) or as PKCS#12 (RFC 7292).
The result, ``Material``, carries everything certpost stores about a certificate; the key is
kept only as PKCS#8 PEM bytes, to be sealed before it touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from app.kit import x509 as kx
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import utc_now
from app.kit.trust import TrustStore


@dataclass(frozen=True)
class Material:
    leaf: x509.Certificate
    chain: list[x509.Certificate]
    key_pem: bytes = field(repr=False)
    sans: list[str]
    fingerprint: str
    self_signed: bool
    trusted: bool

    @property
    def not_before(self) -> datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    @property
    def certificate_pem(self) -> str:
        return kx.certificate_pem(self.leaf).decode()

    @property
    def chain_pem(self) -> str:
        return "".join(kx.certificate_pem(c).decode() for c in self.chain)


def normalised_sans(leaf: x509.Certificate) -> list[str]:
    """The leaf's DNS names as A-labels; names that are not host names are kept lower-cased."""
    out: list[str] = []
    for raw in kx.dns_names(leaf):
        try:
            name = normalise_hostname(raw, allow_wildcard=True)
        except InvalidName:
            name = raw.strip().lower().rstrip(".")
        if name and name not in out:
            out.append(name)
    return out


def from_pem(
    certificate_pem: str | bytes,
    private_key_pem: str | bytes,
    *,
    chain_pem: str | bytes | None = None,
    passphrase: str | None = None,
    trust: TrustStore,
) -> Material:
    """Apply the upload rules to PEM input; raises a ``kit.x509.MaterialError`` subclass."""
    certs = kx.load_pem_certificates(certificate_pem)
    if chain_pem and chain_pem.strip():
        certs += kx.load_pem_certificates(chain_pem)
    key = kx.load_private_key(private_key_pem, passphrase)
    return _assemble(certs[0], certs[1:], key, trust)


def from_pkcs12(data: bytes, password: str | None, *, trust: TrustStore) -> Material:
    """Read a PKCS#12 file; its extra certificates come in no defined order, so order them."""
    pw = password.encode() if password else None
    try:
        key, leaf, extra = pkcs12.load_key_and_certificates(data, pw)
    except ValueError as exc:
        message = str(exc).lower()
        if "password" in message or "mac" in message or "decrypt" in message:
            raise kx.KeyPassphrase("the PKCS#12 password is missing or wrong") from None
        raise kx.InvalidCertificate("the file is not a readable PKCS#12 archive") from None
    except TypeError:
        raise kx.KeyPassphrase("the PKCS#12 password is missing or wrong") from None
    if leaf is None:
        raise kx.InvalidCertificate("the PKCS#12 archive holds no certificate")
    if key is None:
        raise kx.InvalidKey("the PKCS#12 archive holds no private key")
    return _assemble(leaf, order_chain(leaf, list(extra)), key, trust)


def order_chain(leaf: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """Walk issuer links from the leaf through ``pool``; certificates off the path are dropped."""
    chain: list[x509.Certificate] = []
    current = leaf
    remaining = list(pool)
    while remaining and len(chain) < kx.MAX_CHAIN:
        issuer = next((c for c in remaining if c != current and kx.signed_by(current, c)), None)
        if issuer is None:
            break
        chain.append(issuer)
        remaining.remove(issuer)
        current = issuer
    return chain


def _assemble(leaf, chain, key, trust: TrustStore) -> Material:
    if len(chain) + 1 > kx.MAX_CHAIN:
        raise kx.InvalidChain(
            f"the chain has {len(chain) + 1} certificates; at most {kx.MAX_CHAIN} are accepted"
        )
    if not kx.key_matches(leaf, key):
        raise kx.KeyMismatch("the private key does not belong to the certificate")
    kx.check_chain_order([leaf, *chain])
    sans = normalised_sans(leaf)
    self_signed = kx.is_self_signed(leaf)
    trusted = not self_signed and trust.verifies(leaf, chain, sans)
    return Material(
        leaf=leaf,
        chain=chain,
        key_pem=kx.private_key_pem(key),
        sans=sans,
        fingerprint=kx.fingerprint_sha256(leaf),
        self_signed=self_signed,
        trusted=trusted,
    )


def self_signed(names: list[str], *, days: int = 825) -> Material:
    """A new ECDSA P-256 self-signed certificate for ``names`` (already normalised).

    Used for a server's out-of-the-box certificate and on request. 825 days is the longest
    validity clients accepted for a server certificate before the 398-day rule.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = utc_now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    leaf = builder.sign(key, hashes.SHA256())
    return Material(
        leaf=leaf,
        chain=[],
        key_pem=kx.private_key_pem(key),
        sans=list(names),
        fingerprint=kx.fingerprint_sha256(leaf),
        self_signed=True,
        trusted=False,
    )
