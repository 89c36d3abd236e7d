"""Reading submitted certificate material and applying the upload rules: pure functions.

Input arrives as PEM text (leaf first, then its issuers; RFC 7468) or as PKCS#12 (RFC 7292).
The result, ``Material``, carries everything certpost stores about a certificate; the key is
kept only as PKCS#8 PEM bytes, to be sealed before it touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from cryptography.x509.oid import NameOID

from app.kit import keypolicy, pbe
from app.kit import x509 as kx
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import utc_now
from app.kit.trust import ChainVerdict, TrustStore


@dataclass(frozen=True)
class Material:
    leaf: x509.Certificate
    chain: list[x509.Certificate]
    key_pem: bytes = field(repr=False)
    sans: list[str]
    fingerprint: str
    self_signed: bool
    trust: ChainVerdict
    trust_store: str | None  # TrustStore.identity of the roots ``trust`` was judged against

    @property
    def trusted(self) -> bool:
        return self.trust.trusted

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

    def to_wire(self) -> tuple:
        """A picklable form, so a worker process can read material for the service (reading.py)."""
        der = [c.public_bytes(Encoding.DER) for c in (self.leaf, *self.chain)]
        trust = (self.trust.trusted, self.trust.reason, self.trust.detail)
        return (der, self.key_pem, self.sans, self.fingerprint, self.self_signed, trust, self.trust_store)

    @classmethod
    def from_wire(cls, wire: tuple) -> Material:
        der, key_pem, sans, fingerprint, self_signed, trust, trust_store = wire
        certs = [x509.load_der_x509_certificate(d) for d in der]
        return cls(certs[0], certs[1:], key_pem, list(sans), fingerprint, self_signed, ChainVerdict(*trust),
                   trust_store)


class InvalidSan(kx.MaterialError):
    code = "invalid_san"


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in text)


def normalised_sans(leaf: x509.Certificate) -> list[str]:
    """The leaf's SAN DNS names as A-labels; names that are not host names are kept lower-cased.

    A name holding a control character, a space or a NUL is refused (InvalidSan): it can match
    nothing a client asks for (RFC 5280 section 4.2.1.6: the preferred name syntax of RFC 1034),
    and a NUL was the trick of the 2009 "null prefix" attacks on clients that stop at it.
    """
    out: list[str] = []
    for raw in kx.dns_names(leaf):
        if _has_control(raw):
            raise InvalidSan(
                f"a subjectAltName DNS name holds a control character or space ({raw.encode('unicode_escape').decode()[:80]!s})"
            )
        try:
            name = normalise_hostname(raw, allow_wildcard=True)
        except InvalidName:
            name = raw.strip().lower().rstrip(".")
        if name and name not in out:
            out.append(name)
    return out


def _load_certificates(certificate_pem: str | bytes, chain_pem: str | bytes | None) -> list[x509.Certificate]:
    certs = kx.load_pem_certificates(certificate_pem)
    if chain_pem and chain_pem.strip():
        certs += kx.load_pem_certificates(chain_pem)
    if len(certs) > kx.MAX_CHAIN:
        raise kx.InvalidChain(f"the chain has {len(certs)} certificates; at most {kx.MAX_CHAIN} are accepted")
    return certs


def precheck_pem(certificate_pem: str | bytes, private_key_pem: str | bytes,
                 chain_pem: str | bytes | None = None) -> None:
    """The cheap refusals of ``from_pem`` alone (no key is loaded): milliseconds at most.

    The service runs these before queueing the costly reading, so hostile material that the
    rules refuse never waits for, nor occupies, a reader process.
    """
    certs = _load_certificates(certificate_pem, chain_pem)
    keypolicy.check_certificate(certs[0])
    key_data = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    keypolicy.check_private_key_size(key_data)
    pbe.check_pem(key_data)


def precheck_pkcs12(data: bytes) -> None:
    """The iteration caps and key size of a PKCS#12 file, read before it is opened."""
    pbe.check_der(data)


def from_pem(
    certificate_pem: str | bytes,
    private_key_pem: str | bytes,
    *,
    chain_pem: str | bytes | None = None,
    passphrase: str | None = None,
    trust: TrustStore,
) -> Material:
    """Apply the upload rules to PEM input; raises a ``kit.x509.MaterialError`` subclass.

    The certificate is judged first (key type and size, signature) and the key's size and
    encryption work are read before it is loaded: loading is the costly step (an RSA key's
    primes are checked, an encrypted key's KDF runs), so it comes last.
    """
    precheck_pem(certificate_pem, private_key_pem, chain_pem)
    certs = _load_certificates(certificate_pem, chain_pem)
    key = kx.load_private_key(private_key_pem, passphrase)
    return _assemble(certs[0], certs[1:], key, trust)


def from_pkcs12(data: bytes, password: str | None, *, trust: TrustStore) -> Material:
    """Read a PKCS#12 file; its extra certificates come in no defined order, so order them.

    Its MAC and encryption iteration counts and the size of its key are read before it is
    opened (``app.kit.pbe``).
    """
    precheck_pkcs12(data)
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
    except UnsupportedAlgorithm:  # a key type or cipher OpenSSL here cannot read
        raise kx.InvalidCertificate("the PKCS#12 archive uses an unsupported algorithm") from None
    if key is None:
        held = "a certificate" if leaf is not None or extra else "nothing"
        raise kx.InvalidKey(f"the PKCS#12 archive holds no private key (it holds {held}); export it with its key")
    if leaf is None:
        leaf = next((c for c in extra if kx.key_matches(c, key)), None)
        if leaf is None:
            raise kx.InvalidCertificate("the PKCS#12 archive holds no certificate for its private key")
        extra = [c for c in extra if c != leaf]
    if len(extra) + 1 > kx.MAX_CHAIN:
        raise kx.InvalidChain(f"the chain has {len(extra) + 1} certificates; at most {kx.MAX_CHAIN} are accepted")
    keypolicy.check_certificate(leaf)
    return _assemble(leaf, order_chain(leaf, list(extra)), key, trust, verify_with=list(extra))


def order_chain(leaf: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """The order to serve ``pool`` in: the issuer path from the leaf, then the alternates.

    Alternates (a cross-signed copy of an intermediate, say) are kept after the path; a
    certificate that issued nothing reachable from the leaf is dropped.
    """
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
    for cert in remaining:
        if any(kx.signed_by(member, cert) for member in [leaf, *chain] if member != cert):
            chain.append(cert)
    return chain


def _assemble(leaf, chain, key, trust: TrustStore, *, verify_with=None) -> Material:
    """Check and describe the material; ``chain`` is what is stored and served, in that order.

    The verifier gets every supplied certificate (``verify_with``, default ``chain``) and builds
    the path itself, as clients do.
    """
    keypolicy.check_certificate(leaf)
    if not kx.key_matches(leaf, key):
        raise kx.KeyMismatch("the private key does not belong to the certificate")
    kx.check_chain(leaf, chain)
    sans = normalised_sans(leaf)
    self_signed = kx.is_self_signed(leaf)
    pool = chain if verify_with is None else verify_with
    verdict = chain_verdict(trust, leaf, pool, sans, self_signed)
    return Material(
        leaf=leaf,
        chain=chain,
        key_pem=kx.private_key_pem(key),
        sans=sans,
        fingerprint=kx.fingerprint_sha256(leaf),
        self_signed=self_signed,
        trust=verdict,
        trust_store=trust.identity,
    )


SELF_SIGNED = ChainVerdict(False, "self_signed", "the certificate signed itself: no client trusts it")


def chain_verdict(trust: TrustStore, leaf, pool, sans: list[str], self_signed: bool) -> ChainVerdict:
    """The chain's verdict; a self-signed leaf is never trusted, even when a bundle lists it as a root
    (it would then be its own trust anchor, which is not what a client's store holds)."""
    return SELF_SIGNED if self_signed else trust.evaluate(leaf, pool, sans)


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
    keypolicy.check_certificate(leaf)  # the same rules as uploads (P-256, SHA-256 pass them)
    return Material(
        leaf=leaf,
        chain=[],
        key_pem=kx.private_key_pem(key),
        sans=list(names),
        fingerprint=kx.fingerprint_sha256(leaf),
        self_signed=True,
        trust=SELF_SIGNED,
        trust_store=None,  # judged by no store: self-signed is never trusted
    )
