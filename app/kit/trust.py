"""Would a client trust this chain? Path validation with ``cryptography.x509.verification``.

The roots are Mozilla's (certifi) plus an optional PEM bundle of the provider's own roots
(``CERTPOST_TRUST_BUNDLE``). A chain is "trusted" when it builds to one of them and the leaf is
valid as a TLS server certificate for one of its own names (RFC 5280 section 6, CA/B Forum
profile as enforced by the verifier). This module judges the *chain* at a moment inside the
leaf's validity window; whether the leaf is in date now is a separate, cheap question
(``time_reason``), so a chain verdict never goes stale with the clock and can be cached or
stored for as long as the trust store is the same one (``TrustStore.identity``).

A verdict carries a ``reason`` a panel can show (None when trusted):

- ``self_signed``: the leaf signed itself and is not a trusted root;
- ``unknown_issuer``: no path to a trusted root (an intermediate missing, or a private CA
  that the trust store does not hold);
- ``name_constraints``: an issuer's nameConstraints exclude the leaf's names (RFC 5280
  section 4.2.1.10);
- ``issuer_expired``: the only paths run through an issuer outside its validity period;
- ``no_subject_alt_name``: the leaf names no DNS name or IP to verify it for (clients ignore
  the subject CN: RFC 9525 section 6.3);
- ``invalid_chain``: anything else the verifier refuses (key usage, basic constraints,
  extended key usage, a signature that does not verify); ``detail`` has its words.

and, from ``time_reason``, ``expired`` and ``not_yet_valid`` (RFC 5280 section 4.1.2.5).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from app.kit.time import expired, utc_now

CHAIN_REASONS = (
    "self_signed", "unknown_issuer", "name_constraints", "issuer_expired", "no_subject_alt_name", "invalid_chain",
)
TIME_REASONS = ("expired", "not_yet_valid")
REASONS = CHAIN_REASONS + TIME_REASONS

CACHE_SIZE = 20_000
"""Chain verdicts kept per process: about 200 bytes each, 4 MB at most."""


@dataclass(frozen=True)
class ChainVerdict:
    """The chain's standing with one trust store; ``reason`` None when it verifies."""

    trusted: bool
    reason: str | None = None
    detail: str | None = None


TRUSTED = ChainVerdict(True)


class TrustStore:
    """The set of trusted roots; built once by the application's lifespan, never at import."""

    def __init__(self, roots: list[x509.Certificate]):
        self.roots = roots
        self._store = Store(roots)
        self.identity = store_identity(roots)
        self._verdicts: OrderedDict[tuple[str, str, str], ChainVerdict] = OrderedDict()

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
        return self.evaluate(leaf, intermediates, names, now=now).trusted

    def evaluate(
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        names: list[str],
        *,
        now: datetime | None = None,
    ) -> ChainVerdict:
        """The chain verdict with the reason of the first name's failure (see the module doc)."""
        at = _inside_validity(leaf, now)
        policy = PolicyBuilder().store(self._store).time(at).max_chain_depth(8)
        failure: str | None = None
        for subject in _subjects(leaf, names):
            try:
                policy.build_server_verifier(subject).verify(leaf, intermediates)
                return TRUSTED
            except (VerificationError, ValueError) as exc:
                failure = failure or str(exc)
        return _classify(leaf, failure)

    def cached(self, fingerprint: str, chain_pem: str, compute) -> ChainVerdict:
        """``compute()``'s verdict, remembered per (trust store, fingerprint, chain) in this process.

        The same leaf can be stored with different chains (two accounts, or one before and
        after a ``PUT``), so the chain's digest is part of the key. Bounded, least recently
        used first out.
        """
        key = (self.identity, fingerprint, hashlib.sha256(chain_pem.encode()).hexdigest())
        verdict = self._verdicts.get(key)
        if verdict is not None:
            self._verdicts.move_to_end(key)
            return verdict
        verdict = compute()
        self._verdicts[key] = verdict
        if len(self._verdicts) > CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return verdict


def store_identity(roots: list[x509.Certificate]) -> str:
    """SHA-256 over the roots' sorted DER: equal for equal sets, in any process, on any host.

    Stored beside each certificate's chain verdict, so a restart with another bundle (or
    another certifi release) knows which verdicts were judged against other roots.
    """
    digest = hashlib.sha256()
    for der in sorted(c.public_bytes(Encoding.DER) for c in roots):
        digest.update(hashlib.sha256(der).digest())
    return digest.hexdigest()


_ENCOUNTERED = re.compile(r"\s*\(encountered processing .*\)$", re.DOTALL)


def _classify(leaf: x509.Certificate, failure: str | None) -> ChainVerdict:
    """A reason from the verifier's message (cryptography 44+ words them this way) and the leaf."""
    if failure is None:
        return ChainVerdict(False, "no_subject_alt_name", "the certificate names no DNS name or IP address")
    detail = _ENCOUNTERED.sub("", failure).removeprefix("validation failed: ")
    lowered = detail.lower()
    if "name constraint" in lowered:
        return ChainVerdict(False, "name_constraints", detail)
    if "no matching subjectaltname" in lowered or "subjectaltname" in lowered and "missing" in lowered:
        return ChainVerdict(False, "no_subject_alt_name", detail)
    if "not valid at validation time" in lowered:
        return ChainVerdict(False, "issuer_expired", "an issuer in the chain is outside its validity period")
    if "all candidates exhausted with no interior errors" in lowered:
        if _self_issued(leaf):
            return ChainVerdict(False, "self_signed", "the certificate signed itself and is not a trusted root")
        return ChainVerdict(
            False, "unknown_issuer",
            f"no path to a trusted root from issuer {leaf.issuer.rfc4514_string()[:200]}: an intermediate "
            "is missing, or the root is not in the trust store",
        )
    return ChainVerdict(False, "invalid_chain", detail[:500])


def _self_issued(leaf: x509.Certificate) -> bool:
    if leaf.issuer != leaf.subject:
        return False
    try:
        leaf.verify_directly_issued_by(leaf)
    except Exception:  # noqa: BLE001  (any failure means: not signed by itself)
        return False
    return True


def time_reason(not_before: datetime, not_after: datetime, now: datetime) -> tuple[str, str] | None:
    """``expired`` / ``not_yet_valid`` with a detail, or None when ``now`` is inside the window.

    notAfter is inclusive and a whole second (RFC 5280 section 4.1.2.5, ``kit.time.expired``).
    """
    if expired(not_after, now):
        return "expired", f"the certificate expired at {not_after.isoformat()}"
    if now < not_before:
        return "not_yet_valid", f"the certificate is valid from {not_before.isoformat()}"
    return None


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
