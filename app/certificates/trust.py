"""A certificate's trust as a client would judge it now, and the warnings an upload returns.

Trust is two questions (``app.kit.trust``): does the chain build to a root of the *current*
trust store (the ``CERTPOST_TRUST_BUNDLE`` roots and Mozilla's), and is the leaf in date. The
first is judged once per material and trust store and kept in three places, all equal:

- the row (``trusted``, ``trust_reason``, ``trust_detail``, ``trust_store``), written with the
  material and judged again by ``refresh_stored`` at start-up for every row judged against
  other roots (a bundle set, changed or removed, a certifi upgrade). Bindings' warnings, the
  TLS status and the deployments read the row, so they agree with what this module says;
- the per-process cache of ``TrustStore.cached``, keyed by (trust store, fingerprint, chain),
  used when a read meets a row judged against other roots (before ``refresh_stored`` ran);
- nothing else: no verdict outlives the store it was judged against.

The second, time, is judged at every read (it changes with the clock, not with the material).
A list page therefore costs no query per row: rows judged against the current store carry
their verdict, and the others' material is read in one query for the whole page.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.certificates.material import SELF_SIGNED
from app.certificates.repository import CertificateRepository
from app.domains import tls_upkeep
from app.kit import x509 as kx
from app.kit.time import expired
from app.kit.trust import ChainVerdict, TrustStore, time_reason

log = logging.getLogger("certpost")

REFRESH_BATCH = 200


@dataclass(frozen=True)
class Trust:
    """What the API shows: ``trusted`` is false with a ``reason`` (app.kit.trust.REASONS)."""

    trusted: bool
    reason: str | None = None
    detail: str | None = None


def stored_verdict(row, store: TrustStore) -> ChainVerdict | None:
    """The row's chain verdict when it was judged against ``store`` (self-signed: always)."""
    if row.self_signed:
        return SELF_SIGNED
    if row.trust_store == store.identity:
        return ChainVerdict(bool(row.trusted), row.trust_reason, row.trust_detail)
    return None


def judge(store: TrustStore, certificate_pem: str, chain_pem: str, sans: list[str]) -> ChainVerdict:
    """The chain verdict of stored material against ``store`` (no cache; see ``verdict_of``)."""
    try:
        certs = kx.load_pem_certificates(certificate_pem)
        if chain_pem and chain_pem.strip():
            certs += kx.load_pem_certificates(chain_pem)
    except kx.MaterialError:  # stored before today's rules: it still gets a verdict
        return ChainVerdict(False, "invalid_chain", "the stored material could not be read")
    return store.evaluate(certs[0], certs[1:], list(sans))


def verdict_of(store: TrustStore, fingerprint: str, certificate_pem: str, chain_pem: str,
               sans: list[str]) -> ChainVerdict:
    return store.cached(fingerprint, chain_pem or "", lambda: judge(store, certificate_pem, chain_pem, sans))


def trust_now(verdict: ChainVerdict, not_before: datetime, not_after: datetime, now: datetime) -> Trust:
    """The chain's reason first (renewing does not fix an unknown issuer), then time."""
    if not verdict.trusted:
        return Trust(False, verdict.reason, verdict.detail)
    late = time_reason(not_before, not_after, now)
    return Trust(False, *late) if late else Trust(True)


async def trust_of(repo: CertificateRepository, store: TrustStore, rows, now: datetime) -> dict[str, Trust]:
    """Each row's trust now; rows from a list page (no PEM) cost one query for all of them."""
    verdicts: dict[str, ChainVerdict] = {}
    missing = []
    for row in rows:
        verdict = stored_verdict(row, store)
        if verdict is not None:
            verdicts[row.id] = verdict
        else:
            missing.append(row)
    if missing:
        loaded = [r for r in missing if getattr(r, "certificate_pem", None)]
        pems = {r.id: (r.certificate_pem, r.chain_pem or "") for r in loaded}
        pems.update(await repo.pems([r.id for r in missing if r.id not in pems]))
        for row in missing:
            leaf_pem, chain_pem = pems.get(row.id, ("", ""))
            verdicts[row.id] = verdict_of(store, row.fingerprint_sha256, leaf_pem, chain_pem, row.sans)
    return {row.id: trust_now(verdicts[row.id], row.not_before, row.not_after, now) for row in rows}


async def refresh_stored(sessionmaker, store: TrustStore, *, batch: int = REFRESH_BATCH) -> int:
    """Judge again every row judged against other roots; returns how many. Run at start-up.

    About 1 ms of CPU per certificate (measured: 0.8 ms for a two-certificate chain), so
    10,000 certificates take some 10 s once after the trust store changed, and nothing after.
    The judging runs in a thread, one batch per transaction; a row whose material cannot be
    read still gets a verdict (``invalid_chain``), so the loop always ends.
    """
    done = 0
    while True:
        async with sessionmaker() as session:
            repo = CertificateRepository(session)
            rows = await repo.judged_elsewhere(store.identity, batch)
            if not rows:
                break
            verdicts = await asyncio.to_thread(
                lambda rows=rows: {r.id: judge(store, r.certificate_pem, r.chain_pem, r.sans) for r in rows}
            )
            await repo.set_verdicts(verdicts, store.identity)
            # what the domains presenting them keep of their trust (app/domains/tls_summary.py)
            await tls_upkeep.presenting(session, verdicts)
            await session.commit()
        done += len(rows)
    if done:
        log.info("certificate trust judged again against the current trust store: %d certificates", done)
    return done


@dataclass(frozen=True)
class UploadWarning:
    code: str
    message: str


def upload_warnings(cert, trust: Trust, now: datetime, expiring_days: int) -> list[UploadWarning]:
    """What a client would warn about this certificate, with the codes binding uses.

    ``self_signed`` and ``certificate_untrusted`` (its ``reason`` in the message) as a binding
    warns; ``certificate_expired`` and ``certificate_not_yet_valid`` as the TLS status reasons
    say (an upload is accepted, to be replaced or kept for the record, but cannot be bound);
    ``certificate_expiring`` under ``CERTPOST_EXPIRING_DAYS`` (``settings.expiring_days``).
    """
    out: list[UploadWarning] = []
    if cert.self_signed:
        out.append(UploadWarning("self_signed", "The certificate is self-signed: every client will warn."))
    elif trust.reason in (None, "expired", "not_yet_valid"):
        pass
    else:
        out.append(UploadWarning(
            "certificate_untrusted",
            f"The certificate does not chain to a trusted root ({trust.reason}: {trust.detail}): clients will warn.",
        ))
    if expired(cert.not_after, now):
        out.append(UploadWarning(
            "certificate_expired",
            f"The certificate expired at {cert.not_after.isoformat()}: it cannot be bound; upload its renewal.",
        ))
    elif now < cert.not_before:
        out.append(UploadWarning(
            "certificate_not_yet_valid",
            f"The certificate is valid from {cert.not_before.isoformat()}: it cannot be bound before then.",
        ))
    elif cert.not_after - now < timedelta(days=expiring_days):
        days = max(0, (cert.not_after - now).days)
        out.append(UploadWarning(
            "certificate_expiring", f"The certificate expires in {days} days ({cert.not_after.date()}).",
        ))
    return out
