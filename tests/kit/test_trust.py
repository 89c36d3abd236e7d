"""app.kit.trust: each chain reason from a real certificate, time reasons, identity and cache."""

from datetime import UTC, datetime, timedelta

import pytest

from app.kit.trust import ChainVerdict, TrustStore, time_reason
from tests.support.pki import CA, self_signed

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def root() -> CA:
    return CA.create("Trust Kit Root", not_before=NOW - timedelta(days=800))


@pytest.fixture(scope="module")
def store(root) -> TrustStore:
    return TrustStore([root.cert])


def verdict(store, issued, chain=None) -> ChainVerdict:
    from app.kit.x509 import dns_names

    return store.evaluate(issued.cert, issued.chain if chain is None else chain, dns_names(issued.cert))


def test_trusted_through_an_intermediate(store, root):
    assert verdict(store, root.intermediate("Kit Issuing").issue(["a.test"])) == ChainVerdict(True)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("other_root", "unknown_issuer"),
        ("missing_intermediate", "unknown_issuer"),
        ("self_signed", "self_signed"),
        ("name_constraints", "name_constraints"),
        ("issuer_expired", "issuer_expired"),
        ("no_san", "no_subject_alt_name"),
        ("issuer_not_ca", "invalid_chain"),
    ],
)
def test_each_chain_reason(store, root, case, reason):
    chain = None
    if case == "other_root":
        issued = CA.create("Someone Else").issue(["a.test"])
    elif case == "missing_intermediate":
        issued, chain = root.intermediate("Kit Missing").issue(["a.test"]), []
    elif case == "self_signed":
        issued = self_signed(["a.test"])
    elif case == "name_constraints":
        issued = root.intermediate("Kit Constrained", permitted=["allowed.test"]).issue(["a.test"])
    elif case == "issuer_expired":
        old = root.intermediate("Kit Old", not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
        issued = old.issue(["a.test"], not_before=NOW - timedelta(days=100), not_after=NOW + timedelta(days=10))
    elif case == "no_san":
        issued = root.issue(["a.test"], san=False)
    else:
        issued = root.intermediate("Kit Not A CA", is_ca=False).issue(["a.test"])
    found = verdict(store, issued, chain)
    assert (found.trusted, found.reason) == (False, reason)
    assert found.detail and "encountered processing" not in found.detail


def test_chain_is_judged_inside_the_leaf_window(store, root):
    """An expired leaf's chain is still judged (as of its last second): time is another reason."""
    issued = root.issue(["a.test"], not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    assert verdict(store, issued) == ChainVerdict(True)
    assert time_reason(issued.cert.not_valid_before_utc, issued.cert.not_valid_after_utc, NOW)[0] == "expired"
    early = root.issue(["a.test"], not_before=NOW + timedelta(days=1))
    assert time_reason(early.cert.not_valid_before_utc, early.cert.not_valid_after_utc, NOW)[0] == "not_yet_valid"
    last_second = NOW.replace(microsecond=0)
    assert time_reason(NOW - timedelta(days=1), last_second, last_second.replace(microsecond=500_000)) is None


def test_identity_is_the_set_of_roots(root):
    other = CA.create("Another Root")
    assert TrustStore([root.cert, other.cert]).identity == TrustStore([other.cert, root.cert]).identity
    assert TrustStore([root.cert]).identity != TrustStore([root.cert, other.cert]).identity


def test_cache_per_fingerprint_and_chain(store):
    calls = []

    def compute():
        calls.append(1)
        return ChainVerdict(True)

    assert store.cached("fp", "", compute) == store.cached("fp", "", compute)
    store.cached("fp", "-----BEGIN CERTIFICATE-----", compute)
    assert len(calls) == 2
