"""A per-process cache of authenticated API tokens (issue 8: the token lookup was a database
round trip, and through SQLAlchemy's async session a BEGIN/COMMIT pair, on every request).

Keys are SHA-256 of the whole bearer token, never the token itself, so the cache holds nothing
an attacker reading the process could replay. Entries live ``ttl`` seconds (setting
``token_cache_seconds``, 0 disables the cache) and at most ``size`` of them are kept (least
recently used dropped first).

Revocation: the process that revokes a token drops its entries at once, again when the
revocation commits, and refuses to store an answer from a lookup that started before the last
revocation (``epoch``), so a lookup racing the revocation cannot put the token back. Another
process (a second ``certpost serve``, or ``certpost tokens revoke``) cannot reach this cache:
there the token keeps working until its entry expires, at most ``ttl`` seconds. This is the
trade the README's security notes document.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from app.accounts.caller import Caller

DEFAULT_SIZE = 10_000


def token_key(bearer: str) -> bytes:
    return hashlib.sha256(bearer.encode()).digest()


class TokenCache:
    def __init__(self, ttl: float, size: int = DEFAULT_SIZE, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.epoch = 0  # bumped by every invalidation
        self._entries: OrderedDict[bytes, tuple[float, Caller]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.size > 0

    def get(self, key: bytes) -> Caller | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, caller = entry
        if self.clock() >= expires:
            self._entries.pop(key, None)
            return None
        self._entries.move_to_end(key)
        return caller

    def put(self, key: bytes, caller: Caller, epoch: int) -> None:
        """Store ``caller`` unless a revocation happened since the lookup began (``epoch`` is
        ``self.epoch`` read before it)."""
        if not self.enabled or epoch != self.epoch:
            return
        self._entries[key] = (self.clock() + self.ttl, caller)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def invalidate_token(self, token_id: str) -> None:
        """Forget every entry of this token (its id; the cache does not know the secret)."""
        self.epoch += 1
        for key in [k for k, (_, c) in self._entries.items() if c.token_id == token_id]:
            del self._entries[key]

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
