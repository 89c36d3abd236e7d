"""What retention keeps, from the settings and the clock (pure; docs/operations.md, "Retention")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.config import Settings


@dataclass(frozen=True)
class Retention:
    """``None`` (a setting of 0): that table is kept whole."""

    events_before: datetime | None  # events that occurred before this go
    deliveries_before: datetime | None  # finished webhook deliveries last changed before this go
    deployments_keep: int | None  # finished deployments beyond this many newest per server go


def retention(settings: Settings, now: datetime) -> Retention:
    def before(days: int) -> datetime | None:
        return now - timedelta(days=days) if days > 0 else None

    return Retention(
        events_before=before(settings.event_retention_days),
        deliveries_before=before(settings.webhook_delivery_retention_days),
        deployments_keep=settings.deployment_history_keep or None,
    )
