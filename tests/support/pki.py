"""A throwaway test PKI: keys, root and intermediate CAs, server certificates, PEM/PKCS#12."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["rsa-2048", "rsa-4096", "ec-p256", "ec-p384", "ed25519"]
KEY_TYPES: tuple[str, ...] = ("rsa-2048", "rsa-4096", "ec-p256", "ec-p384", "ed25519")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

HOUR = timedelta(hours=1)
OCSP_URL = "http://ocsp.certpost.test/"

# RSA keys are slow to make (4096 especially): cached per (key type, slot). EC/Ed25519 are always new.
_RSA_CACHE: dict[tuple[str, str], rsa.RSAPrivateKey] = {}


def new_key(
    key_type: KeyType | str = "ec-p256", *, fresh: bool = False, slot: str = ""
) -> PrivateKey:
    """A private key. RSA keys are reused per (key_type, slot) unless fresh=True."""
    if key_type in ("rsa-2048", "rsa-4096"):
        if fresh:
            return rsa.generate_private_key(65537, int(key_type[4:]))
        if (key_type, slot) not in _RSA_CACHE:
            _RSA_CACHE[key_type, slot] = rsa.generate_private_key(65537, int(key_type[4:]))
        return _RSA_CACHE[key_type, slot]
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}; expected one of {KEY_TYPES}")


def _algorithm(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _utc(when: datetime) -> datetime:
    """Aware UTC, whole seconds (naive datetimes are taken as UTC)."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.replace(microsecond=0)


def _validity(
    not_before: datetime | None, not_after: datetime | None, days: float
) -> tuple[datetime, datetime]:
    """Default now-1h .. now+days; shifted so a lone past not_after / future not_before works."""
    now, span = _utc(datetime.now(UTC)), timedelta(days=days)
    nb = _utc(not_before) if not_before is not None else None
    na = _utc(not_after) if not_after is not None else None
    if nb is None:
        nb = now - HOUR if na is None or na > now - HOUR else na - span
    if na is None:
        na = now + span if nb <= now else nb + span
    return nb, na


def _key_pem(key: PrivateKey, encryption: serialization.KeySerializationEncryption) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode("ascii")


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]) if name else x509.Name([])


def _key_usage(*on: str) -> x509.KeyUsage:
    flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
    flags += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{f: f in on for f in flags})


def _build(subject, issuer, key, signer, nb, na, serial, exts: list) -> x509.Certificate:
    """Sign a certificate for key; exts is a list of (extension, critical)."""
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(na)
    )
    for ext, critical in exts:
        b = b.add_extension(ext, critical=critical)
    return b.sign(signer, _algorithm(signer))


@dataclass
class Issued:
    """A certificate with its key, the intermediates above it, and the root (None if self-signed)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)
    root: x509.Certificate | None = None

    @property
    def cert_pem(self) -> str:
        return _pem(self.cert)

    @property
    def key_pem(self) -> str:
        """Unencrypted PKCS#8 PEM."""
        return _key_pem(self.key, serialization.NoEncryption())

    @property
    def chain_pem(self) -> str:
        """The intermediates as PEM ("" when issued straight by the root)."""
        return "".join(_pem(c) for c in self.chain)

    @property
    def fullchain_pem(self) -> str:
        return self.cert_pem + self.chain_pem

    def encrypted_key_pem(self, passphrase: bytes | str) -> str:
        """PKCS#8 PEM encrypted with BestAvailableEncryption."""
        if isinstance(passphrase, str):
            passphrase = passphrase.encode()
        return _key_pem(self.key, serialization.BestAvailableEncryption(passphrase))

    def pkcs12(self, password: bytes | None, friendly_name: bytes | None = b"certpost") -> bytes:
        """PKCS#12 bundle of key, certificate and chain (no root)."""
        encryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            friendly_name, self.key, self.cert, self.chain or None, encryption
        )

    @property
    def fingerprint(self) -> str:
        """Lower-case hex SHA-256 of the DER certificate."""
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _leaf(
    names, key, ca, nb, na, cn=None, san=True, serial=None, ocsp_less=True
) -> x509.Certificate:
    """A serverAuth certificate for names, signed by ca (self-signed when ca is None)."""
    names = list(names)
    if not names:
        raise ValueError("at least one name is needed")
    if cn is None:  # CN=names[0], unless too long for a CN and the SAN carries the names
        cn = names[0] if not san or len(names[0].encode()) <= 64 else ""
    subject = _cn(cn)
    rsa_key = isinstance(key, rsa.RSAPrivateKey)  # RSA key exchange needs keyEncipherment
    ku = _key_usage("digital_signature", *(["key_encipherment"] if rsa_key else []))
    aki = _aki(ca) if ca else x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    exts: list = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (ku, True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        (aki, False),
    ]
    if san:  # written exactly as given (wildcards, A-labels); critical with an empty subject
        exts.append((x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), not cn))
    if not ocsp_less:
        ocsp = x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL)
        )
        exts.append((x509.AuthorityInformationAccess([ocsp]), False))
    issuer, signer = (ca.cert.subject, ca.key) if ca else (subject, key)
    return _build(subject, issuer, key, signer, nb, na, serial, exts)


def _aki(ca: CA) -> x509.AuthorityKeyIdentifier:
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


@dataclass
class CA:
    """A certificate authority: root (parent None) or intermediate."""

    cert: x509.Certificate
    key: PrivateKey
    parent: CA | None = None

    @classmethod
    def create(
        cls,
        name: str = "certpost Test Root CA",
        key_type: KeyType | str = "ec-p256",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> CA:
        """A self-signed root CA (default validity now-1h .. now+10y)."""
        return cls._make(name, key_type, not_before, not_after, parent=None)

    def intermediate(
        self,
        name: str,
        key_type: KeyType | str = "ec-p256",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        *,
        permitted: list[str] | None = None,
        is_ca: bool = True,
    ) -> CA:
        """A CA issued by this one (default validity now-1h .. now+5y).

        ``permitted``: DNS subtrees of a critical nameConstraints (RFC 5280 section 4.2.1.10);
        ``is_ca=False``: basicConstraints cA false, which no verifier accepts as an issuer.
        """
        return CA._make(name, key_type, not_before, not_after, parent=self, permitted=permitted, is_ca=is_ca)

    @classmethod
    def _make(cls, name, key_type, not_before, not_after, parent: CA | None, permitted=None, is_ca=True) -> CA:
        key = new_key(key_type, slot=f"ca:{name}")  # never the same RSA key as a leaf
        nb, na = _validity(not_before, not_after, 3650 if parent is None else 1825)
        exts: list = [
            (x509.BasicConstraints(ca=is_ca, path_length=None), True),
            (_key_usage("key_cert_sign", "crl_sign"), True),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        ]
        if parent:
            exts.append((_aki(parent), False))
        if permitted:
            exts.append((x509.NameConstraints([x509.DNSName(n) for n in permitted], None), True))
        issuer, signer = (parent.cert.subject, parent.key) if parent else (_cn(name), key)
        return cls(_build(_cn(name), issuer, key, signer, nb, na, None, exts), key, parent)

    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def root(self) -> x509.Certificate:
        return self.cert if self.parent is None else self.parent.root

    @property
    def chain(self) -> list[x509.Certificate]:
        """This CA and its ancestors, root excluded (what a leaf it issues is served with)."""
        return [] if self.parent is None else [self.cert, *self.parent.chain]

    @property
    def cert_pem(self) -> str:
        return _pem(self.cert)

    @property
    def key_pem(self) -> str:
        return _key_pem(self.key, serialization.NoEncryption())

    def issue(
        self,
        names: list[str],
        *,
        key_type: KeyType | str = "ec-p256",
        key: PrivateKey | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        days: float = 90,
        cn: str | None = None,
        san: bool = True,
        serial: int | None = None,
        ocsp_less: bool = True,
    ) -> Issued:
        """A serverAuth certificate for names. cn=None: names[0] ("" = empty subject)."""
        key = key if key is not None else new_key(key_type)
        nb, na = _validity(not_before, not_after, days)
        cert = _leaf(names, key, self, nb, na, cn, san, serial, ocsp_less)
        return Issued(cert, key, self.chain, self.root)


def self_signed(
    names: list[str],
    *,
    key_type: KeyType | str = "ec-p256",
    days: float = 90,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A self-signed server certificate (root=None, chain=[])."""
    key = new_key(key_type)
    nb, na = _validity(not_before, not_after, days)
    return Issued(_leaf(names, key, None, nb, na), key, [], None)


def write_pem(path: str | Path, *texts: str | bytes) -> Path:
    """Write the PEM texts one after another (each newline-terminated) to path; returns the Path."""
    parts = [t.decode("ascii") if isinstance(t, bytes) else t for t in texts]
    path = Path(path)
    path.write_text("".join(p if p.endswith("\n") else p + "\n" for p in parts if p))
    return path


# -- hostile material, built without doing the expensive work it asks of a reader ------------------

def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        while part > 0x7F:
            part >>= 7
            chunk.insert(0, 0x80 | (part & 0x7F))
        out += bytes(chunk)
    return _der(0x06, bytes(out))


def encrypted_key_pem_with_iterations(iterations: int, ciphertext_size: int = 160) -> str:
    """An encrypted PKCS#8 PEM (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC) asking for ``iterations``.

    The ciphertext is random: a reader that decrypts before checking the count spends the full
    KDF cost and then fails; one that checks first refuses at once.
    """
    import base64
    import os

    pbkdf2 = _der(0x30, _der_oid("1.2.840.113549.1.5.12") + _der(0x30, _der(0x04, os.urandom(16))
                  + _der_int(iterations) + _der(0x30, _der_oid("1.2.840.113549.2.9") + b"\x05\x00")))
    aes = _der(0x30, _der_oid("2.16.840.1.101.3.4.1.42") + _der(0x04, os.urandom(16)))
    pbes2 = _der(0x30, _der_oid("1.2.840.113549.1.5.13") + _der(0x30, pbkdf2 + aes))
    info = _der(0x30, pbes2 + _der(0x04, os.urandom(ciphertext_size)))
    body = base64.encodebytes(info).decode()
    return f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{body}-----END ENCRYPTED PRIVATE KEY-----\n"


def pkcs12_with_mac_iterations(archive: bytes, iterations: int) -> bytes:
    """``archive`` with its MAC iteration count replaced (the MAC no longer verifies)."""
    # PFX ::= SEQUENCE { version, authSafe, macData }; macData's last element is the count.
    _t, start, _end = _tlv(archive, 0)
    _t, _s, pos = _tlv(archive, start)  # version
    _t, _s, pos = _tlv(archive, pos)  # authSafe
    _t, mac_start, _mac_end = _tlv(archive, pos)
    _t, _s, p = _tlv(archive, mac_start)  # DigestInfo
    _t, _s, p = _tlv(archive, p)  # macSalt
    mac = archive[mac_start:p] + _der_int(iterations)
    pfx = archive[start:pos] + _der(0x30, mac)
    return _der(0x30, pfx)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at ``pos``."""
    tag, length, pos = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        length, pos = int.from_bytes(data[pos:pos + count], "big"), pos + count
    return tag, pos, pos + length


def certificate_for_public_key(ca: CA, public_key, names: list[str], *, hash_algorithm=None) -> x509.Certificate:
    """A leaf for any public key (a huge RSA modulus, a DSA key), signed by ``ca``."""
    nb, na = _validity(None, None, 30)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_cn(names[0]))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(na)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return builder.sign(ca.key, hash_algorithm or hashes.SHA256())


def huge_rsa_public_key(bits: int = 16384) -> rsa.RSAPublicKey:
    """An RSA public key of ``bits`` bits made in microseconds (its modulus is not a real product)."""
    import secrets

    modulus = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    return rsa.RSAPublicNumbers(65537, modulus).public_key()


def sign_csr(csr_pem: str, ca, *, names: list[str] | None = None, public_key=None) -> str:
    """What a CA does with the CSR: a serverAuth leaf for the CSR's key and SANs (or others)."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    sans = names or csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(public_key or csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key or csr.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return _pem(cert)
