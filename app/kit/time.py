"""Aware UTC time, in one place so tests and rules agree on "now"."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC, so mark it so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def expired(not_after: datetime, now: datetime) -> bool:
    """True once ``now`` is past a certificate's notAfter second.

    notAfter is inclusive (RFC 5280 section 4.1.2.5) and, like every X.509 time, a whole second:
    the certificate is valid for all of that second, so ``now`` is compared at the same
    granularity (``23:59:59.500`` is still inside a notAfter of ``23:59:59``). This is the
    reading CAs and root programs apply to validity periods (x509-limbo's
    ``rfc5280::validity::notafter-fractional``).
    """
    return now.replace(microsecond=0) > not_after
