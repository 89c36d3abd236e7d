"""When a certificate's expiry is worth telling someone about (pure).

Thresholds are 30, 14, 7 and 1 days before ``not_after`` and 0 (expired). A scan gives the
tightest threshold crossed, so a certificate uploaded with 5 days left gets the 7-day notice
only, not a burst of three. Validity includes the ``not_after`` second (RFC 5280 §4.1.2.5), so a
certificate is expired only after it (``app.kit.time.expired``).

Who is told: every certificate that is bound (a domain's binding, a server's server-wide mail
certificate or webmail default) and that is not going to be renewed in time: uploaded and
self-signed ones (nothing renews them), and ACME ones whose renewal failed or is not scheduled
before ``not_after``. A healthy ACME certificate is renewed a third of its lifetime before expiry
(30 days for 90-day certificates), so it never needs the notice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from app.kit.time import expired

THRESHOLDS = (30, 14, 7, 1)
EXPIRED = 0
HORIZON = timedelta(days=max(THRESHOLDS))


def threshold(not_after: datetime, now: datetime) -> int | None:
    """The tightest threshold crossed at ``now`` (0 once expired), None when none is."""
    if expired(not_after, now):
        return EXPIRED
    left = not_after - now
    crossed = [t for t in THRESHOLDS if left <= timedelta(days=t)]
    return min(crossed) if crossed else None


def renewed_in_time(source: str, renewal_status: str | None, renewal_at: datetime | None,
                    not_after: datetime) -> bool:
    """Whether certpost is going to replace the material before it expires on its own."""
    if source != "acme" or renewal_status in (None, "failed"):
        return False
    return renewal_status == "renewing" or (renewal_at is not None and renewal_at < not_after)


def days_left(not_after: datetime, now: datetime) -> int:
    return max(0, (not_after - now).days)
