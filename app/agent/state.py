"""What the agent remembers across restarts, in ``state_dir`` (written atomically, mode 0600).

* ``state.json`` — applied generation, the digest of the applied document
  (``app.kit.digest.config_digest``, version 2), the last apply result (re-sent for a repeated
  generation), last error and time, and the applied document's **journal**: its scalars
  (``applied_head``) and the map entries changed since the document file was written
  (``applied_changes``, field -> name -> value, null: removed). Small, so recording a failure
  or a one-domain change does not rewrite the (large) applied document;
* ``applied-<sha256>.json`` — the applied desired document as it was when last written in full
  (a full document, or when the journal passed :data:`JOURNAL_MAX` entries), WITHOUT bundles
  (so no key material) and without its generation, as canonical JSON; its name is its own
  SHA-256 (``applied_file`` in state.json), checked when it is loaded. The applied document is
  that file with the journal on top, and its version-2 digest, computed at load, must be
  ``applied_digest``. A new file is written before state.json names it (so a crash in between
  leaves the old pair intact), the old one removed afterwards. A state.json of the previous
  layout (the file named by its version-1 digest, no journal) is read as a file with an empty
  journal, and the digest is recomputed in version 2;
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.agent.fsutil import atomic_write
from app.kit.digest import EXCLUDED, digest_of, maps_sum, scalars

# Changed entries the journal in state.json holds before the document file is rewritten: a
# one-domain change then writes about 1 KB, and the whole document once in 256 changes.
JOURNAL_MAX = 256


def canonical_document(document: dict) -> bytes:
    """Canonical JSON of a document (sorted keys, no spaces, without generation and bundles):
    the content of ``applied-<sha256>.json``."""
    content = {k: v for k, v in document.items() if k not in EXCLUDED}
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def merge_journal(journal: Mapping | None, field: str, changes: Mapping[str, str | None]) -> dict:
    """``journal`` (field -> name -> value or None) with ``changes`` to ``field`` on top."""
    out = {f: dict(entries) for f, entries in (journal or {}).items()}
    if changes:
        out.setdefault(field, {}).update(changes)
    return out


def journal_size(journal: Mapping | None) -> int:
    return sum(len(entries) for entries in (journal or {}).values())


def replay(document: dict, head: Mapping | None, journal: Mapping | None) -> dict:
    """The document file's content with the journal on top (in place)."""
    if head:
        document.update(head)
    for field_name, entries in (journal or {}).items():
        target = document.setdefault(field_name, {})
        for name, value in entries.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    return document


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
    # The document file (its SHA-256) and the journal since it was written (module docstring).
    applied_file: str | None = None
    applied_changes: dict | None = None
    # The version-2 digest's sum of map entries (app.kit.digest), so a delta's digest is
    # computed from its changes alone; in memory only (recomputed at load).
    applied_sum: int | None = field(default=None, repr=False)


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
        fields = set(AgentState.__dataclass_fields__) - {"applied_sum"}
        st = AgentState(**{k: v for k, v in data.items() if k in fields})
        if st.desired is not None:  # an earlier version's state.json: the document inline
            st.desired = {k: v for k, v in st.desired.items() if k != "bundles"}
            st.applied_sum = maps_sum(st.desired)
            st.applied_digest = digest_of(scalars(st.desired), st.applied_sum)
            self.save(st, canonical_document(st.desired))  # in this version's form
            return st
        legacy = st.applied_file is None  # the document file named by its version-1 digest
        if legacy:
            st.applied_file = st.applied_digest
        if st.applied_file is not None:
            path = self.document_path(st.applied_file)
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                raise StateCorrupt(f"{path} (named by {self.path}) is missing") from None
            if hashlib.sha256(raw).hexdigest() != st.applied_file:
                raise StateCorrupt(f"{path} does not have the digest its name says")
            document = replay(json.loads(raw), data.get("applied_head"), st.applied_changes)
            total = maps_sum(document)
            digest = digest_of(scalars(document), total)
            if not legacy and digest != st.applied_digest:
                raise StateCorrupt(f"{path} with the journal of {self.path} is not the applied document")
            st.desired = {"generation": st.applied_generation, **document}
            st.applied_digest, st.applied_sum = digest, total
        self._remove_stale(st.applied_file)
        return st

    def save(self, state: AgentState, canonical: bytes | None = None) -> None:
        """Persist ``state``; ``canonical`` is the applied document's canonical JSON when it is
        written in full (from :func:`canonical_document`; the journal is then empty), None when
        only state.json changes (a failure, or a change the journal records)."""
        if state.desired is not None and canonical is not None:
            state.applied_file = hashlib.sha256(canonical).hexdigest()
            state.applied_changes = {}
            path = self.document_path(state.applied_file)
            if not path.exists():
                atomic_write(path, canonical, 0o600)
        small = {
            "applied_generation": state.applied_generation,
            "applied_digest": state.applied_digest,
            "applied_file": state.applied_file,
            "applied_head": scalars(state.desired) if state.desired is not None else None,
            "applied_changes": state.applied_changes or {},
            "last_result": state.last_result,
            "last_error": state.last_error,
            "last_applied_at": state.last_applied_at,
            "failed_names": state.failed_names or [],
        }
        atomic_write(self.path, json.dumps(small, indent=1, sort_keys=True).encode(), 0o600)
        if canonical is not None:
            self._remove_stale(state.applied_file)

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
