"""When to try a failed delivery again: exponential backoff with full jitter, capped.

Full jitter (a uniform draw between 0 and the exponential bound) spreads retries of many
servers that failed together, e.g. after a controller restart; see the AWS Architecture Blog,
"Exponential Backoff And Jitter" (2015). A floor of half the bound keeps retries from
collapsing to zero.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def retry_delay(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``attempts`` failed attempts (1 for the first failure)."""
    bound = min(cap, base * (2 ** max(0, attempts - 1)))
    draw = (rng or random).uniform(bound / 2, bound)
    return min(cap, draw)


def next_attempt_at(now: datetime, attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> datetime:
    return now + timedelta(seconds=retry_delay(attempts, base=base, cap=cap, rng=rng))
