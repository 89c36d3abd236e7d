"""A dict used as a bounded cache: the newest entry last, the oldest dropped past a limit.

Python dicts keep insertion order, so moving a key to the end (pop, then set) and dropping from
the front is a least-recently-written cache in two lines; the per-process caches of pinned agent
contexts and of the domain TLS pages share it.
"""

from __future__ import annotations

import itertools
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def keep(entries: dict[K, V], key: K, value: V, limit: int) -> None:
    """Set ``entries[key]`` as the newest entry; drop the oldest beyond ``limit``."""
    entries.pop(key, None)
    entries[key] = value
    if len(entries) > limit:
        for old in list(itertools.islice(entries, len(entries) - limit)):
            del entries[old]
