"""The agent's persisted state: the small state.json, the applied document beside it, and the
in-memory bundle store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.agent.bundles import BundleStore
from app.agent.state import AgentState, StateCorrupt, StateFile, canonical_document
from app.kit.digest import config_digest

A, B = "a" * 64, "b" * 64
DOC = {
    "generation": 7,
    "server_hostname": "mx1.test",
    "server_certificate": A,
    "webmail_default": A,
    "mail": {"mail.b.test": B, "mail.a.test": A},
    "webmail": {"webmail.a.test": A},
}


def test_canonical_document_digest_is_config_digest() -> None:
    canonical, digest = canonical_document({**DOC, "bundles": {}})
    assert digest == config_digest(DOC)
    assert b"generation" not in canonical and b"bundles" not in canonical


def _saved(tmp_path: Path) -> StateFile:
    sf = StateFile(tmp_path / "state.json")
    canonical, digest = canonical_document(DOC)
    sf.save(AgentState(7, dict(DOC), {"status": "applied"}, None, "now", digest), canonical)
    return sf


def test_round_trip_and_small_state(tmp_path: Path) -> None:
    sf = _saved(tmp_path)
    small = json.loads(sf.path.read_text())
    assert "desired" not in small and small["applied_digest"] == config_digest(DOC)
    st = sf.load()
    assert st.desired == DOC and st.applied_generation == 7
    assert st.applied_digest == config_digest(DOC)
    # A failure record rewrites only state.json; the document file stays as it is.
    doc_file = sf.document_path(st.applied_digest)
    before = doc_file.stat().st_mtime_ns
    st.last_error = {"generation": 8, "at": "later"}
    sf.save(st)
    assert doc_file.stat().st_mtime_ns == before
    assert sf.load().last_error == {"generation": 8, "at": "later"}


def test_held_back_names_survive_a_restart(tmp_path: Path) -> None:
    """The served view is the applied document with its held-back names: both must persist."""
    sf = _saved(tmp_path)
    st = sf.load()
    st.failed_names = [
        {
            "name": "mail.b.test",
            "service": "mail",
            "fingerprint": B,
            "code": "key_refused",
            "message": "ee key too small",
            "serving": None,
        }
    ]
    sf.save(st)
    assert sf.load().failed_names == st.failed_names
    assert "BEGIN" not in sf.path.read_text()


def test_new_document_replaces_old(tmp_path: Path) -> None:
    sf = _saved(tmp_path)
    old = sf.document_path(config_digest(DOC))
    doc2 = {**DOC, "generation": 8, "webmail": {}}
    canonical, digest = canonical_document(doc2)
    sf.save(AgentState(8, doc2, None, None, "now", digest), canonical)
    assert not old.exists()
    assert sorted(p.name for p in tmp_path.glob("applied-*")) == [f"applied-{digest}.json"]
    assert sf.load().desired == doc2


def test_crash_before_state_json_keeps_old_pair(tmp_path: Path) -> None:
    sf = _saved(tmp_path)
    canonical, digest = canonical_document({**DOC, "webmail": {}})
    sf.document_path(digest).write_bytes(canonical)  # written, state.json not yet renamed
    st = sf.load()
    assert st.desired == DOC
    assert not sf.document_path(digest).exists()  # the orphan is removed


def test_earlier_format_is_read_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"applied_generation": 7, "desired": DOC, "last_result": None}))
    st = StateFile(path).load()
    assert st.desired == DOC and st.applied_digest == config_digest(DOC)
    assert "desired" not in json.loads(path.read_text())
    assert StateFile(path).load().desired == DOC


def test_tampered_document_is_refused(tmp_path: Path) -> None:
    sf = _saved(tmp_path)
    sf.document_path(config_digest(DOC)).write_text("{}")
    with pytest.raises(StateCorrupt):
        sf.load()


def test_bundle_store_tracks_held_in_memory(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / f"{A}.pem").write_bytes(b"k-----BEGIN CERTIFICATE-----c")
    (tmp_path / "b" / f".{B}.pem.certpost-tmp").write_bytes(b"x")
    store = BundleStore(tmp_path / "b")
    assert store.held() == [A] and store.has(A) and not store.has(B)
    store.put(B, b"k", b"-----BEGIN CERTIFICATE-----c")
    assert store.held() == [A, B]
    assert store.prune({B}) == [A]
    assert store.held() == [B] and not (tmp_path / "b" / f"{A}.pem").exists()
    assert BundleStore(tmp_path / "b").held() == [B]
