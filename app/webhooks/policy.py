"""When to retry a webhook delivery, and when to give up on the endpoint (pure rules).

Standard Webhooks ("Deliverability and reliability", "Delivery success and failure"): only a
2xx answer is a success (a 3xx is a failure: redirects are not followed); retries follow an
exponential schedule with random jitter; a ``Retry-After`` answer is honoured; ``410 Gone``
means the receiver wants no more and the endpoint is disabled at once; an endpoint that fails
for a long time is disabled. certpost's default schedule is the spec's example cut at about a
day: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (27.6 h in all); `CERTPOST_WEBHOOK_RETRY_SCHEDULE`
changes it (tests use fractions of a second).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

DEFAULT_SCHEDULE_TEXT = "5,300,1800,7200,18000,36000,36000"  # the default of CERTPOST_WEBHOOK_RETRY_SCHEDULE
JITTER = 0.1  # +-10 %
MAX_RETRY_AFTER = 86400.0


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,300,1800"`` -> the delays in seconds before the 2nd, 3rd ... attempt; ValueError if bad."""
    delays = tuple(float(part) for part in text.split(",") if part.strip())
    if not delays or any(d < 0 for d in delays):
        raise ValueError("a retry schedule is one or more non-negative numbers of seconds")
    return delays


def succeeded(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def gone(status: int | None) -> bool:
    """410: the receiver asks to be left alone; the endpoint is disabled, not retried."""
    return status == 410


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` given in seconds (RFC 9110 section 10.2.3); the date form is ignored."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), MAX_RETRY_AFTER)


def next_attempt(now: datetime, attempts: int, schedule: tuple[float, ...], *,
                 retry_after: float | None = None, rng: random.Random | None = None) -> datetime | None:
    """When to try again after ``attempts`` failed attempts, or None once the schedule is spent."""
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1]
    delay *= 1 + (rng or random).uniform(-JITTER, JITTER)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + timedelta(seconds=delay)


def should_disable(failing_since: datetime | None, now: datetime, disable_after: float) -> bool:
    """An endpoint that has answered nothing but failures for ``disable_after`` seconds is disabled
    (the default is a day, as long as one message's retries last)."""
    return failing_since is not None and (now - failing_since).total_seconds() >= disable_after
