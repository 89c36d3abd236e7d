"""Would a client trust this chain? Path validation with ``cryptography.x509.verification``.

The roots are Mozilla's (certifi) plus an optional PEM bundle of the provider's own roots.
A certificate is "trusted" when its chain builds to one of them and the leaf is valid as a TLS
server certificate for one of its own names (RFC 5280 section 6, CA/B Forum profile as enforced by
the verifier). Validity in time is judged separately (expired / not yet valid have codes of
their own), so the check runs at a moment inside the leaf's validity window.
"""

from __future__ import annotations

import ipaddress
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from app.kit.time import utc_now


class TrustStore:
    """The set of trusted roots; built once by the application's lifespan, never at import."""

    def __init__(self, roots: list[x509.Certificate]):
        self.roots = roots
        self._store = Store(roots)

    @classmethod
    def load(cls, extra_bundle: Path | None = None) -> TrustStore:
        with warnings.catch_warnings():
            # One Mozilla root has a non-positive serial; cryptography warns but still loads it.
            warnings.simplefilter("ignore")
            roots = x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes())
        if extra_bundle is not None:
            roots += x509.load_pem_x509_certificates(Path(extra_bundle).read_bytes())
        return cls(roots)

    def verifies(
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        names: list[str],
        *,
        now: datetime | None = None,
    ) -> bool:
        """True when the chain verifies for at least one of ``names`` (or the leaf's IPs).

        ``now`` (default: the clock) is the moment to judge at, moved inside the leaf's
        validity window; the bench (bench/x509_limbo.py) passes a test case's time.
        """
        at = _inside_validity(leaf, now)
        policy = PolicyBuilder().store(self._store).time(at).max_chain_depth(8)
        for subject in _subjects(leaf, names):
            try:
                policy.build_server_verifier(subject).verify(leaf, intermediates)
                return True
            except (VerificationError, ValueError):
                continue
        return False


def _inside_validity(leaf: x509.Certificate, now: datetime | None = None) -> datetime:
    now = utc_now() if now is None else now
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if now < start:
        return start + timedelta(seconds=1)
    if now > end:
        return end - timedelta(seconds=1)
    return now


def _subjects(leaf: x509.Certificate, names: list[str]):
    for name in names[:3]:
        concrete = "certpost-check" + name[1:] if name.startswith("*.") else name
        yield x509.DNSName(concrete)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    for ip in san.get_values_for_type(x509.IPAddress)[:1]:
        yield x509.IPAddress(ipaddress.ip_address(ip))
