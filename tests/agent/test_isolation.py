"""Blast radius of one, the pure parts: the in-memory TLS identity check on good and bad
material (real OpenSSL, no daemon), and which names are held back on what.

The bad keys are the ones operators met: RSA-1024 (refused at load at SECLEVEL 2) and DSA-2048
(loads, but no handshake can be completed: TLS 1.3 has no DSA signature scheme).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from app.agent.apply import ApplyFailed
from app.agent.backends.base import StepError, View
from app.agent.bundles import BundleStore
from app.agent.isolated import IsolatedApply
from app.agent.isolation import (
    NameFailure,
    held_back,
    served_view,
    to_check,
    verify_culprits,
)
from app.agent.tlscheck import check_identity
from tests.support.pki import CA, Issued, write_pem

S, A, A2, B, B2 = "0" * 64, "a" * 64, "c" * 64, "b" * 64, "d" * 64


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create("isolation root").intermediate("isolation intermediate")


def _bundle(tmp_path: Path, issued: Issued) -> Path:
    return write_pem(tmp_path / f"{issued.fingerprint}.pem", issued.key_pem, issued.fullchain_pem)


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
def test_good_material_completes_a_handshake(tmp_path, ca, key_type):
    assert check_identity(_bundle(tmp_path, ca.issue(["mail.a.test"], key_type=key_type))) is None


def test_rsa_1024_is_refused_at_load(tmp_path, ca):
    issued = ca.issue(["mail.a.test"], key=rsa.generate_private_key(65537, 1024))
    unusable = check_identity(_bundle(tmp_path, issued))
    assert unusable is not None and unusable.code == "key_refused"
    assert "too small" in unusable.message
    assert "BEGIN" not in unusable.message


@pytest.mark.parametrize(
    "key", [dsa.generate_private_key(2048), ec.generate_private_key(ec.SECP256K1())]
)
def test_dsa_and_odd_curves_fail_the_handshake(tmp_path, ca, key):
    unusable = check_identity(_bundle(tmp_path, ca.issue(["mail.a.test"], key=key)))
    assert unusable is not None and unusable.code == "handshake_failed"


def test_a_file_without_a_key_is_refused(tmp_path, ca):
    issued = ca.issue(["mail.a.test"])
    path = write_pem(tmp_path / "nokey.pem", issued.fullchain_pem)
    assert check_identity(path).code == "key_refused"


def test_check_is_cheap(tmp_path, ca):
    path = _bundle(tmp_path, ca.issue(["mail.a.test"], key_type="rsa-2048"))
    started = time.perf_counter()
    for _ in range(20):
        assert check_identity(path) is None
    assert (time.perf_counter() - started) / 20 < 0.05  # measured about 3-6 ms


BEFORE = View(S, S, {"mail.a.test": A, "mail.b.test": B}, {"webmail.a.test": A})


def test_a_bad_fingerprint_holds_back_its_names_on_what_they_served():
    desired = View(
        S,
        S,
        {"mail.a.test": A2, "mail.b.test": B2, "mail.new.test": A2},
        {"webmail.a.test": A2},
    )
    failures = held_back(desired, BEFORE, {A2: ("key_refused", "ee key too small")}, [])
    assert [(f.service, f.name, f.serving) for f in failures] == [
        ("mail", "mail.a.test", A),
        ("mail", "mail.new.test", None),
        ("webmail", "webmail.a.test", A),
    ]
    served = served_view(desired, failures)
    assert served.mail == {"mail.a.test": A, "mail.b.test": B2}  # new name: server default
    assert served.webmail == {"webmail.a.test": A}
    assert to_check(desired, BEFORE) == {A2, B2}


def test_a_failure_is_carried_while_the_same_certificate_is_asked_for():
    old = NameFailure("mail.a.test", "mail", A2, "verify_failed", "served x", A)
    same = View(S, S, {"mail.a.test": A2, "mail.b.test": B2}, {})
    assert [f.name for f in held_back(same, BEFORE, {}, [old])] == ["mail.a.test"]
    fixed = View(S, S, {"mail.a.test": A, "mail.b.test": B2}, {})
    assert held_back(fixed, BEFORE, {}, [old]) == []  # a new certificate clears it
    removed = View(S, S, {"mail.b.test": B2}, {})
    assert held_back(removed, BEFORE, {}, [old]) == []
    refused = NameFailure("mail.a.test", "mail", A2, "config_refused", "map_hash", A)
    assert held_back(same, BEFORE, {}, [refused]) == []  # found again by validation, if still


def test_verify_failures_are_names_only_when_only_changed_names_failed():
    served = View(S, S, {"mail.a.test": A2, "mail.b.test": B}, {"webmail.a.test": A})
    probe = {"service": "mail", "name": "mail.a.test", "error": "served x, expected y"}
    assert verify_culprits([probe, probe], served, BEFORE) == {
        ("mail", "mail.a.test"): "served x, expected y"
    }
    unchanged = {"service": "mail", "name": "mail.b.test", "error": "e"}
    assert verify_culprits([probe, unchanged], served, BEFORE) is None
    no_sni = {"service": "mail", "name": None, "error": "e"}
    assert verify_culprits([probe, no_sni], served, BEFORE) is None
    assert verify_culprits([], served, BEFORE) is None


class ScriptedPipeline:
    """Stands in for the pipeline where real daemons cannot be made to fail one name alone
    after a reload (a per-name verification failure); the real-daemon cases are in
    test_blast_radius.py. ``verify_fails`` fail verification when changed; ``refused`` make
    validation fail whenever they are in the view; ``broken`` fails everything."""

    def __init__(self, verify_fails=(), refused=(), broken=False) -> None:
        self.verify_fails, self.refused, self.broken = set(verify_fails), set(refused), broken
        self.applied: list[View] = []
        self.validations = 0

    async def validate_only(self, view: View):
        self.validations += 1
        if self.broken or self.refused & set(view.webmail):
            return StepError("validate", "nginx", "could not build map_hash")
        return None

    async def apply(self, view: View, previous: View | None) -> dict:
        self.applied.append(view)
        if await self.validate_only(view) is not None:
            raise ApplyFailed(
                {"status": "failed", "step": "validate", "daemon": "nginx", "rolled_back": True}
            )
        before = previous.mail if previous else {}
        bad = sorted(
            n for n in self.verify_fails if n in view.mail and view.mail[n] != before.get(n)
        )
        if bad:
            probes = [
                {"daemon": "postfix", "service": "mail", "name": n, "error": "e"} for n in bad
            ]
            raise ApplyFailed(
                {"status": "failed", "step": "verify", "rolled_back": True, "probes": probes}
            )
        return {"changed": {"postfix": True}}


async def test_verification_failure_of_one_name_reruns_without_it(tmp_path):
    pipeline = ScriptedPipeline(verify_fails={"mail.a.test"})
    isolated = IsolatedApply(pipeline, BundleStore(tmp_path))
    desired = View(S, S, {"mail.a.test": A2, "mail.b.test": B2}, {"webmail.a.test": A})
    outcome, failures, served = await isolated.apply(desired, BEFORE, {}, [])
    assert [(f.name, f.code, f.serving) for f in failures] == [("mail.a.test", "verify_failed", A)]
    assert served.mail == {"mail.a.test": A, "mail.b.test": B2}
    assert len(pipeline.applied) == 2 and outcome["changed"] == {"postfix": True}
    assert set(outcome["timings"]) == {"check", "isolate"}


async def test_refused_names_are_found_by_bisection(tmp_path):
    refused = {f"webmail.n{i}.test" for i in (3, 41)}
    pipeline = ScriptedPipeline(refused=refused)
    isolated = IsolatedApply(pipeline, BundleStore(tmp_path))
    webmail = {f"webmail.n{i}.test": B2 for i in range(64)}
    desired = View(S, S, dict(BEFORE.mail), webmail)
    _, failures, served = await isolated.apply(desired, BEFORE, {}, [])
    assert {f.name for f in failures} == refused
    assert {f.code for f in failures} == {"config_refused"}
    assert set(served.webmail) == set(webmail) - refused
    assert pipeline.validations < 40  # bisection: about 30 runs, not 64


async def test_a_configuration_refused_without_any_changed_name_fails_whole(tmp_path):
    isolated = IsolatedApply(ScriptedPipeline(broken=True), BundleStore(tmp_path))
    desired = View(S, S, {"mail.a.test": A2}, {})
    with pytest.raises(ApplyFailed):
        await isolated.apply(desired, BEFORE, {}, [])


async def test_an_unusable_server_certificate_fails_whole(tmp_path):
    isolated = IsolatedApply(ScriptedPipeline(), BundleStore(tmp_path))
    desired = View(A2, S, {}, {})
    with pytest.raises(ApplyFailed) as failed:
        await isolated.apply(desired, BEFORE, {A2: ("key_refused", "ee key too small")}, [])
    assert failed.value.result["step"] == "check"
