"""The front's shared intermediate chains (``issuers-chain-path``), as pure file operations."""

from __future__ import annotations

from app.agent.backends.base import View
from app.agent.backends.haproxy_issuers import Issuers, slot_name, split_leaf
from tests.agent.test_haproxy_render import backend
from tests.support.pki import CA

S = "0" * 64


def _issued():
    """(root, a leaf and another leaf of one intermediate)."""
    root = CA.create("issuers test root")
    issuing = root.intermediate("issuers test intermediate")
    return root, issuing.issue(["mail.a.test"]), issuing.issue(["mail.b.test"])


def test_the_leaf_is_split_from_its_chain():
    _, a, _ = _issued()
    leaf, chain = split_leaf((a.cert_pem + a.chain_pem).encode())
    assert leaf == a.cert_pem.encode() and chain == a.chain_pem.encode()
    assert split_leaf(a.cert_pem.encode()) == (a.cert_pem.encode(), b"")


def test_one_slot_per_issuer_and_none_for_a_chain_that_does_not_start_at_the_issuer():
    root, a, b = _issued()
    other = CA.create("another root").intermediate("another intermediate")
    slot = slot_name(a.cert_pem.encode(), a.chain_pem.encode())
    assert slot is not None and slot == slot_name(b.cert_pem.encode()) == slot_name(a.cert_pem.encode())
    assert slot_name(a.cert_pem.encode(), other.cert_pem.encode()) is None
    assert slot_name(a.cert_pem.encode(), root.cert_pem.encode()) is None


def test_the_first_chain_takes_the_slot_and_a_variant_stays_in_its_bundle(tmp_path):
    root, a, b = _issued()
    issuers = Issuers(tmp_path / "issuers")
    chain = a.chain_pem.encode()
    assert issuers.share(a.cert_pem.encode(), chain, 0o600, None)
    assert issuers.share(b.cert_pem.encode(), chain, 0o600, None)
    # The same intermediate followed by the root: another chain for the same issuer.
    assert not issuers.share(b.cert_pem.encode(), chain + root.cert_pem.encode(), 0o600, None)
    assert not issuers.share(b.cert_pem.encode(), b"", 0o600, None)
    files = list((tmp_path / "issuers").iterdir())
    assert [f.read_bytes() for f in files] == [chain]
    assert files[0].stat().st_mode & 0o777 == 0o600
    # A new process reads the slot from disk.
    assert Issuers(tmp_path / "issuers").share(b.cert_pem.encode(), chain, 0o600, None)


def test_the_runtime_payload_carries_the_chain_the_file_leaves_out(tmp_path):
    _, a, _ = _issued()
    issuers = Issuers(tmp_path / "issuers")
    key, leaf, chain = a.key_pem.encode(), a.cert_pem.encode(), a.chain_pem.encode()
    assert issuers.payload(key + leaf) == key + leaf  # no slot yet: nothing to add
    issuers.share(leaf, chain, 0o600, None)
    assert issuers.payload(key + leaf) == key + leaf + chain
    assert issuers.payload(key + leaf + chain) == key + leaf + chain


def test_bundles_leave_the_chain_to_issuers_chain_path(tmp_path):
    _, a, _ = _issued()
    hx = backend(tmp_path)
    hx.ensure_directories()
    key, leaf, chain = a.key_pem.encode(), a.cert_pem.encode(), a.chain_pem.encode()
    assert hx.bundle_bytes(key, leaf + chain) == key + leaf
    assert [p.read_bytes() for p in hx.issuers.directory.iterdir()] == [chain]
    config = hx.render_config().decode()
    # The global line comes before the bind line that loads the crt-list.
    assert config.index(f"global\n    issuers-chain-path {tmp_path}/hx/issuers\n") < config.index(" bind ")
    assert hx.render(View(S, S, {}, {})).files[hx.config_file] == config.encode()
