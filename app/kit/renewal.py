"""When an ACME certificate next becomes due for renewal, as one instant (pure).

The worker's question "which certificates are due now?" has three parts: the renewal time has
come (``renewal_at``), no renewal is running (``renewal_status`` is not ``renewing``) and a
failed one has waited out its backoff (``next_renewal_attempt_at``). Folded into one instant,
``renewal_eligible_at``, stored on the certificate and indexed, the question becomes one index
range scan (``renewal_eligible_at <= now``) however the rows are spread: after a DNS outage
every certificate has ``renewal_at`` in the past and its next attempt in the future, and a scan
on ``renewal_at`` alone would read and discard them all.
"""

from __future__ import annotations

from datetime import datetime


def renewal_eligible_at(source: str | None, renewal_at: datetime | None, status: str | None,
                        next_attempt_at: datetime | None) -> datetime | None:
    """The moment the certificate becomes due; None while it cannot be (not ACME, no renewal
    time, or a renewal already running)."""
    if source != "acme" or renewal_at is None or status == "renewing":
        return None
    if next_attempt_at is not None and next_attempt_at > renewal_at:
        return next_attempt_at
    return renewal_at
