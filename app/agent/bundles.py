"""The agent's bundle store: ``state_dir/bundles/<fingerprint>.pem``, one file per certificate.

A bundle file holds the private key first, then the leaf, then its issuers: the order Postfix
requires for ``smtpd_tls_chain_files`` and SNI tables (postconf(5), "tls_server_sni_maps"), and
one that nginx (ngx_http_ssl_module: a file may hold both certificate and key) and Dovecot
(``ssl_cert = <file`` / ``ssl_key = <file``, OpenSSL skips PEM blocks of the other kind) read
too. Files are named by fingerprint, so a name never changes content: a renewed certificate is
a new file, and a daemon never reads a half-replaced key/certificate pair.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from app.agent.desired import BundleIn
from app.agent.fsutil import atomic_write
from app.kit import x509 as kx


class BundleError(ValueError):
    """A bundle the controller sent cannot be served; the message never contains key material."""

    def __init__(self, fingerprint: str, message: str) -> None:
        super().__init__(f"bundle {fingerprint}: {message}")
        self.fingerprint = fingerprint


def build_bundle(fingerprint: str, bundle: BundleIn) -> tuple[bytes, bytes]:
    """Check a received bundle and return (key PEM, leaf+chain PEM).

    Checks, before anything reaches a daemon: it parses, the leaf's SHA-256 equals the
    fingerprint it was sent under, the key is the leaf's, and each certificate is issued by the
    next (RFC 8446 section 4.4.2). Postfix and Dovecot check none of this at reload time.
    """
    try:
        certs = kx.load_pem_certificates(bundle.certificate_pem)
        if len(certs) != 1:
            raise kx.InvalidCertificate("certificate_pem must hold exactly the leaf")
        chain = kx.load_pem_certificates(bundle.chain_pem) if bundle.chain_pem.strip() else []
        key = kx.load_private_key(bundle.key_pem)
    except kx.MaterialError as exc:
        raise BundleError(fingerprint, str(exc)) from None
    leaf = certs[0]
    if kx.fingerprint_sha256(leaf) != fingerprint:
        raise BundleError(
            fingerprint, "the leaf's SHA-256 fingerprint differs from the bundle's name"
        )
    if not kx.key_matches(leaf, key):
        raise BundleError(fingerprint, "the private key does not belong to the certificate")
    try:
        kx.check_chain_order([leaf, *chain])
    except kx.InvalidChain as exc:
        raise BundleError(fingerprint, str(exc)) from None
    certs_pem = kx.certificate_pem(leaf) + b"".join(kx.certificate_pem(c) for c in chain)
    return kx.private_key_pem(key), certs_pem


class BundleStore:
    """The held bundles. The agent process is the only writer: the directory is listed once,
    then the set of held fingerprints is kept up to date by :meth:`put` and :meth:`prune`, so a
    request neither stats a file per fingerprint nor lists the directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: set[str] | None = None

    def path(self, fingerprint: str) -> Path:
        return self.directory / f"{fingerprint}.pem"

    def _known(self) -> set[str]:
        if self._held is None:
            held: set[str] = set()
            if self.directory.is_dir():
                with os.scandir(self.directory) as entries:
                    for e in entries:
                        stem, dot, ext = e.name.rpartition(".")
                        if dot and ext == "pem" and len(stem) == 64:
                            held.add(stem)
            self._held = held
        return self._held

    def held(self) -> list[str]:
        return sorted(self._known())

    def has(self, fingerprint: str) -> bool:
        return fingerprint in self._known()

    def put(self, fingerprint: str, key_pem: bytes, certs_pem: bytes) -> None:
        known = self._known()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path(fingerprint), key_pem + certs_pem, 0o600)
        known.add(fingerprint)

    def read(self, fingerprint: str) -> tuple[bytes, bytes]:
        """(key PEM, certificates PEM) of a held bundle, split so backends can reorder them."""
        data = self.path(fingerprint).read_bytes()
        marker = b"-----BEGIN CERTIFICATE-----"
        at = data.index(marker)
        return data[:at], data[at:]

    def prune_only(self, candidates: set[str]) -> list[str]:
        """Remove the held bundles among ``candidates`` (the caller knows nothing names them)."""
        known = self._known()
        removed = sorted(candidates & known)
        for fp in removed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(fp))
            known.discard(fp)
        return removed

    def prune(self, keep: set[str]) -> list[str]:
        known = self._known()
        removed = sorted(known - keep)
        for fp in removed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(fp))
            known.discard(fp)
        return removed
