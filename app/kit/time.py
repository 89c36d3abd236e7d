"""Aware UTC time, in one place so tests and rules agree on "now"."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC, so mark it so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
