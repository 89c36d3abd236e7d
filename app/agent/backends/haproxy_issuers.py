"""One copy of each intermediate chain for HAProxy's ``issuers-chain-path`` (HAProxy 2.2+).

Why: with OpenSSL 3 every certificate HAProxy loads costs about 5 KB per parsed X509 object,
so a bundle that carries its intermediate makes the worker hold one copy of the same chain per
domain — 4.8 KB of the 27.4 KB per domain measured at 10,000 (docs/performance.md, section 12).
A bundle that holds only key and leaf is completed by HAProxy from the chains it read from
``issuers-chain-path`` at start, and every certificate with the same issuer shares that chain
in memory (configuration manual, "issuers-chain-path": "if certificate chain is not included
in PEM […] HAProxy will complete chain if the issuer of the certificate corresponds to the
first certificate of the chain loaded with issuers-chain-path").

HAProxy matches a leaf to a chain by the leaf's authority key identifier and checks that the
chain's first certificate issued it. So a chain goes to a *slot* named after the leaf's issuer
(its name and key identifier), and a bundle drops its chain only when the slot holds exactly
that chain: the first chain seen for an issuer takes the slot and keeps it; a bundle whose
issuer already has a different chain in its slot (a cross-signed variant) keeps its own chain
in the file, which HAProxy then serves as is. A slot file never changes content, so bundles
written earlier stay complete.

A running HAProxy knows only the slots that existed when it started; the runtime API payload of
a bundle without its chain therefore carries the slot's chain (:meth:`Issuers.payload`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509

from app.agent.fsutil import atomic_write

_BEGIN = b"-----BEGIN CERTIFICATE-----"


def split_leaf(certs_pem: bytes) -> tuple[bytes, bytes]:
    """(leaf PEM, chain PEM) of ``leaf + chain`` as the bundle store holds them."""
    second = certs_pem.find(_BEGIN, certs_pem.find(_BEGIN) + 1)
    if second < 0:
        return certs_pem, b""
    return certs_pem[:second], certs_pem[second:]


def _key_id(cert: x509.Certificate, oid, attribute: str) -> bytes | None:
    try:
        value = getattr(cert.extensions.get_extension_for_oid(oid).value, attribute)
    except x509.ExtensionNotFound:
        return None
    return value or None


def slot_name(leaf_pem: bytes, chain_pem: bytes | None = None) -> str | None:
    """The slot of the leaf's issuer, or None when HAProxy could not complete this leaf from a
    slot: no authority key identifier in the leaf, or (given a chain) a first chain certificate
    that is not the leaf's issuer by name and key identifier."""
    try:
        leaf = x509.load_pem_x509_certificate(leaf_pem)
        akid = _key_id(leaf, x509.ExtensionOID.AUTHORITY_KEY_IDENTIFIER, "key_identifier")
        if akid is None:
            return None
        if chain_pem is not None:
            first = x509.load_pem_x509_certificate(chain_pem)
            skid = _key_id(first, x509.ExtensionOID.SUBJECT_KEY_IDENTIFIER, "digest")
            if skid != akid or first.subject != leaf.issuer:
                return None
    except ValueError:
        return None
    return hashlib.sha256(leaf.issuer.public_bytes() + b"\0" + akid).hexdigest()[:32]


class Issuers:
    """The ``issuers/`` directory of the front: one PEM chain per leaf issuer."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, bytes | None] = {}  # slot -> its chain (None: no file)

    def path(self, slot: str) -> Path:
        return self.directory / f"{slot}.pem"

    def chain(self, slot: str) -> bytes | None:
        if slot not in self._held:
            try:
                self._held[slot] = self.path(slot).read_bytes()
            except FileNotFoundError:
                self._held[slot] = None
        return self._held[slot]

    def share(self, leaf_pem: bytes, chain_pem: bytes, mode: int, group: str | None) -> bool:
        """True when HAProxy completes ``leaf_pem`` with exactly ``chain_pem`` from a slot (the
        slot is written when it is free); False: the bundle must carry its chain."""
        if not chain_pem:
            return False
        slot = slot_name(leaf_pem, chain_pem)
        if slot is None:
            return False
        held = self.chain(slot)
        if held is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path(slot), chain_pem, mode, group)
            self._held[slot] = held = chain_pem
        return held == chain_pem

    def payload(self, bundle: bytes) -> bytes:
        """A bundle file as the runtime API must receive it: with its chain, which a running
        HAProxy may not hold (its slot can be newer than the process)."""
        if bundle.count(_BEGIN) != 1:
            return bundle  # it carries its chain (or holds no certificate: HAProxy says so)
        leaf = bundle[bundle.find(_BEGIN):]
        slot = slot_name(leaf)
        held = self.chain(slot) if slot is not None else None
        if held is None:
            return bundle
        return bundle.rstrip(b"\n") + b"\n" + held
