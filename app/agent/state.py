"""What the agent remembers across restarts, in ``state_dir`` (written atomically, mode 0600).

* ``state.json`` — applied generation, the digest of the applied document, the last apply result
  (re-sent for a repeated generation), last error and time: small, so recording a failure does
  not rewrite the (large) applied document;
* ``applied-<digest>.json`` — the applied desired document WITHOUT bundles (so no key material)
  and without its generation (that is in state.json), as the canonical JSON that
  ``app.kit.digest.config_digest`` hashes: the file's SHA-256 is its name and state.json's
  ``applied_digest``, checked when it is loaded. A new one is written before state.json names it
  (so a crash in between leaves the old pair intact), the old one removed afterwards;
* ``nonces.json`` — signature nonces seen recently, to refuse replays (RFC 9421 section 7.2.2);
  entries older than twice the allowed clock skew are dropped, since a request that old is
  refused for its timestamp anyway.

The agent process is the only writer: it loads this once at start and keeps it in memory
(state.json of earlier versions, with the document inline, is still read, and rewritten in this
form by the next apply).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.agent.fsutil import atomic_write

_EXCLUDED = ("generation", "bundles")


def canonical_document(document: dict) -> tuple[bytes, str]:
    """(canonical JSON, digest) of a document: the digest is exactly ``config_digest(document)``.

    The same serialization as app.kit.digest (sorted keys, no spaces, without generation and
    bundles), kept here as bytes so that the applied document is hashed and persisted from one
    serialization (tests/agent/test_state.py checks the two agree).
    """
    content = {k: v for k, v in document.items() if k not in _EXCLUDED}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return canonical, hashlib.sha256(canonical).hexdigest()


@dataclass
class AgentState:
    applied_generation: int = 0
    desired: dict | None = None
    last_result: dict | None = None
    last_error: dict | None = None
    last_applied_at: str | None = None
    # config_digest(desired), kept with it: computed once per applied document, not per request.
    applied_digest: str | None = None
    # Names of the applied document held back on what they served before
    # (app.agent.isolation.NameFailure as dicts): the served view is the document with these.
    failed_names: list[dict] | None = None


class StateCorrupt(RuntimeError):
    pass


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def document_path(self, digest: str) -> Path:
        return self.path.with_name(f"applied-{digest}.json")

    def load(self) -> AgentState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return AgentState()
        fields = AgentState.__dataclass_fields__
        st = AgentState(**{k: v for k, v in data.items() if k in fields})
        if st.desired is not None:  # an earlier version's state.json: the document inline
            canonical, st.applied_digest = canonical_document(st.desired)
            self.save(st, canonical)  # in this version's form (the document file first)
            return st
        if st.applied_digest is not None:
            path = self.document_path(st.applied_digest)
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                raise StateCorrupt(f"{path} (named by {self.path}) is missing") from None
            if hashlib.sha256(raw).hexdigest() != st.applied_digest:
                raise StateCorrupt(f"{path} does not have the digest its name says")
            st.desired = {"generation": st.applied_generation, **json.loads(raw)}
        self._remove_stale(st.applied_digest)
        return st

    def save(self, state: AgentState, canonical: bytes | None = None) -> None:
        """Persist ``state``; ``canonical`` is the applied document's canonical JSON when it is
        new (from :func:`canonical_document`), None when the applied document did not change."""
        if state.desired is not None and canonical is not None:
            path = self.document_path(state.applied_digest)
            if not path.exists():
                atomic_write(path, canonical, 0o600)
        small = {
            "applied_generation": state.applied_generation,
            "applied_digest": state.applied_digest,
            "last_result": state.last_result,
            "last_error": state.last_error,
            "last_applied_at": state.last_applied_at,
            "failed_names": state.failed_names or [],
        }
        atomic_write(self.path, json.dumps(small, indent=1, sort_keys=True).encode(), 0o600)
        if canonical is not None:
            self._remove_stale(state.applied_digest)

    def _remove_stale(self, keep: str | None) -> None:
        """Remove applied documents state.json does not name (a replaced one, or one a crash
        left before state.json named it)."""
        directory = self.path.parent
        if not directory.is_dir():
            return
        with os.scandir(directory) as entries:
            names = [
                e.name
                for e in entries
                if e.name.startswith("applied-")
                and e.name.endswith(".json")
                and e.name != f"applied-{keep}.json"
            ]
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)


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
