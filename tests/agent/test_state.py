"""The agent's persisted state: the small state.json, the applied document beside it, and the
in-memory bundle store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from app.agent.bundles import BundleStore
from app.agent.state import AgentState, StateCorrupt, StateFile, canonical_document, merge_journal
from app.kit.digest import config_digest, config_digest_v1, maps_sum

A, B = "a" * 64, "b" * 64
DOC = {
    "generation": 7,
    "server_hostname": "mx1.test",
    "server_certificate": A,
    "webmail_default": A,
    "mail": {"mail.b.test": B, "mail.a.test": A},
    "webmail": {"webmail.a.test": A},
}


def _file_name(document: dict) -> str:
    return hashlib.sha256(canonical_document(document)).hexdigest()


def test_canonical_document_leaves_out_generation_and_bundles() -> None:
    canonical = canonical_document({**DOC, "bundles": {}})
    assert b"generation" not in canonical and b"bundles" not in canonical
    assert json.loads(canonical) == {k: v for k, v in DOC.items() if k != "generation"}


def _state(document: dict, generation: int = 7, **kw) -> AgentState:
    return AgentState(generation, dict(document), {"status": "applied"}, None, "now",
                      config_digest(document), **kw)


def _saved(tmp_path: Path) -> StateFile:
    sf = StateFile(tmp_path / "state.json")
    sf.save(_state(DOC), canonical_document(DOC))
    return sf


def test_round_trip_and_small_state(tmp_path: Path) -> None:
    sf = _saved(tmp_path)
    small = json.loads(sf.path.read_text())
    assert "desired" not in small and small["applied_digest"] == config_digest(DOC)
    assert small["applied_file"] == _file_name(DOC) and small["applied_changes"] == {}
    st = sf.load()
    assert st.desired == DOC and st.applied_generation == 7
    assert st.applied_digest == config_digest(DOC) and st.applied_sum == maps_sum(DOC)
    # A failure record rewrites only state.json; the document file stays as it is.
    doc_file = sf.document_path(st.applied_file)
    before = doc_file.stat().st_mtime_ns
    st.last_error = {"generation": 8, "at": "later"}
    sf.save(st)
    assert doc_file.stat().st_mtime_ns == before
    assert sf.load().last_error == {"generation": 8, "at": "later"}


def test_journal_replays_onto_the_document_file(tmp_path: Path) -> None:
    """A delta is recorded in state.json alone; the next start rebuilds the same document and
    checks it against the version-2 digest computed from scratch."""
    sf = _saved(tmp_path)
    st = sf.load()
    doc_file = sf.document_path(st.applied_file)
    before = doc_file.stat().st_mtime_ns
    doc2 = {**DOC, "generation": 8, "server_certificate": B,
            "mail": {"mail.a.test": A, "mail.c.test": B}, "autoconfig": {"a.test": "mail.a.test"}}
    journal = merge_journal(None, "mail", {"mail.b.test": None, "mail.c.test": B})
    journal = merge_journal(journal, "autoconfig", {"a.test": "mail.a.test"})
    sf.save(_state(doc2, 8, applied_file=st.applied_file, applied_changes=journal))
    assert doc_file.stat().st_mtime_ns == before
    again = sf.load()
    assert again.desired == doc2 and again.applied_digest == config_digest(doc2)
    # A journal that does not lead to the recorded digest is refused.
    small = json.loads(sf.path.read_text())
    small["applied_changes"]["mail"]["mail.c.test"] = A
    sf.path.write_text(json.dumps(small))
    with pytest.raises(StateCorrupt):
        sf.load()


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
    old = sf.document_path(_file_name(DOC))
    doc2 = {**DOC, "generation": 8, "webmail": {}}
    sf.save(_state(doc2, 8, applied_changes={"mail": {"x.test": None}}), canonical_document(doc2))
    assert not old.exists()
    assert sorted(p.name for p in tmp_path.glob("applied-*")) == [f"applied-{_file_name(doc2)}.json"]
    assert json.loads(sf.path.read_text())["applied_changes"] == {}  # written in full: no journal
    assert sf.load().desired == doc2


def test_crash_before_state_json_keeps_old_pair(tmp_path: Path) -> None:
    sf = _saved(tmp_path)
    other = {**DOC, "webmail": {}}
    sf.document_path(_file_name(other)).write_bytes(canonical_document(other))  # not named yet
    st = sf.load()
    assert st.desired == DOC
    assert not sf.document_path(_file_name(other)).exists()  # the orphan is removed


def test_earlier_format_is_read_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"applied_generation": 7, "desired": DOC, "last_result": None}))
    st = StateFile(path).load()
    assert st.desired == DOC and st.applied_digest == config_digest(DOC)
    assert "desired" not in json.loads(path.read_text())
    assert StateFile(path).load().desired == DOC


def test_version_1_layout_is_read_with_a_version_2_digest(tmp_path: Path) -> None:
    """The previous layout: the file named by its version-1 digest, no journal. The agent then
    reports the version-2 digest (the controller's next delta is refused, the full document
    goes, and nothing else is lost)."""
    path = tmp_path / "state.json"
    v1 = config_digest_v1(DOC)
    (tmp_path / f"applied-{v1}.json").write_bytes(canonical_document(DOC))
    path.write_text(json.dumps({"applied_generation": 7, "applied_digest": v1, "last_result": None}))
    st = StateFile(path).load()
    assert st.desired == DOC and st.applied_digest == config_digest(DOC) and st.applied_file == v1
    StateFile(path).save(st)
    assert StateFile(path).load().applied_digest == config_digest(DOC)


def test_tampered_document_is_refused(tmp_path: Path) -> None:
    sf = _saved(tmp_path)
    sf.document_path(_file_name(DOC)).write_text("{}")
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
