"""What the agent remembers across restarts, in ``state_dir`` (written atomically, mode 0600).

* ``state.json`` — applied generation, the applied desired document WITHOUT bundles (so no key
  material), the last apply result (re-sent for a repeated generation), last error and time;
* ``nonces.json`` — signature nonces seen recently, to refuse replays (RFC 9421 section 7.2.2);
  entries older than twice the allowed clock skew are dropped, since a request that old is
  refused for its timestamp anyway.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.agent.fsutil import atomic_write


@dataclass
class AgentState:
    applied_generation: int = 0
    desired: dict | None = None
    last_result: dict | None = None
    last_error: dict | None = None
    last_applied_at: str | None = None


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> AgentState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return AgentState()
        return AgentState(**{k: v for k, v in data.items() if k in AgentState.__dataclass_fields__})

    def save(self, state: AgentState) -> None:
        atomic_write(self.path, json.dumps(asdict(state), indent=1, sort_keys=True).encode(), 0o600)


@dataclass
class NonceLedger:
    path: Path
    max_age: int
    seen: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, max_age: int) -> NonceLedger:
        try:
            seen = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            seen = {}
        return cls(path, max_age, {str(k): int(v) for k, v in seen.items()})

    def remember(self, nonce: str, created: int, now: float | None = None) -> bool:
        """Record a nonce; False when it was already seen (a replay). Persisted before returning."""
        current = time.time() if now is None else now
        self.seen = {n: c for n, c in self.seen.items() if c >= current - self.max_age}
        if nonce in self.seen:
            return False
        self.seen[nonce] = created
        atomic_write(self.path, json.dumps(self.seen).encode(), 0o600)
        return True
