"""The agent against real Postfix, Dovecot and nginx: apply, verify, refuse, roll back.

Every assertion about what is served is made the way a client sees it: a handshake on the real
port (STARTTLS where the protocol has it), verified against the test CA with hostname checks on.
"""

from __future__ import annotations

import json
import time

import pytest

from app.kit.digest import config_digest
from tests.support.daemons import PROTOCOL_OF, write_agent_config
from tests.support.pki import Issued
from tests.support.tlsprobe import served_fingerprint

pytestmark = pytest.mark.daemons

DOMAINS = ("a.test", "b.test", "c.test")
MAIL_PORTS = ("smtp", "smtps", "imap", "imaps", "pop3", "pop3s")


@pytest.fixture(scope="module")
def certs(test_ca, mail_stack) -> dict[str, Issued]:
    ca, _ = test_ca
    stack, _ = mail_stack
    made = {"server": ca.issue([stack.hostname]), "server2": ca.issue([stack.hostname])}
    for d in DOMAINS:
        made[d] = ca.issue([f"mail.{d}", f"webmail.{d}"])
        made[d + "/renewed"] = ca.issue([f"mail.{d}", f"webmail.{d}"])
    return made


@pytest.fixture(scope="module")
def material(certs) -> dict[str, Issued]:
    return {c.fingerprint: c for c in certs.values()}


def desired_for(
    client, certs, *, domains=DOMAINS, which: dict[str, str] | None = None, server="server"
) -> dict:
    """A full desired document (without bundles) binding mail.<d> and webmail.<d> for domains."""
    which = which or {}
    pick = {d: certs[which.get(d, d)].fingerprint for d in domains}
    return {
        "generation": client.next_generation(),
        "server_hostname": client.stack.hostname,
        "server_certificate": certs[server].fingerprint,
        "webmail_default": certs[server].fingerprint,
        "mail": {f"mail.{d}": pick[d] for d in domains},
        "webmail": {f"webmail.{d}": pick[d] for d in domains},
    }


def served(stack, port_name: str, sni: str | None, ca_file: str | None) -> str:
    return served_fingerprint(
        "127.0.0.1",
        stack.ports[port_name],
        PROTOCOL_OF[port_name],
        sni,
        ca_file=ca_file,
        check_hostname=bool(sni and ca_file),
    )


def assert_served(stack, desired: dict, ca_file: str, *, removed: tuple[str, ...] = ()) -> None:
    """Every protocol, every bound name, no SNI and an unknown name serve what ``desired`` says."""
    for port in MAIL_PORTS:
        assert served(stack, port, None, ca_file) == desired["server_certificate"], port
        assert served(stack, port, "unknown.example.test", None) == desired["server_certificate"], (
            port
        )
        for name, fp in desired["mail"].items():
            assert served(stack, port, name, ca_file) == fp, (port, name)
        for name in removed:
            assert served(stack, port, f"mail.{name}", None) == desired["server_certificate"], (
                port,
                name,
            )
    assert served(stack, "https", None, ca_file) == desired["webmail_default"]
    assert served(stack, "https", "unknown.example.test", None) == desired["webmail_default"]
    for name, fp in desired["webmail"].items():
        assert served(stack, "https", name, ca_file) == fp, name
    for name in removed:
        assert served(stack, "https", f"webmail.{name}", None) == desired["webmail_default"], name


def apply_ok(client, desired, material) -> tuple[dict, list[str]]:
    response, sent = client.push(desired, material)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "applied" and body["generation"] == desired["generation"]
    return body, sent


def test_three_domains_every_protocol(agent_client, mail_stack, certs, material, test_ca):
    stack, _ = mail_stack
    desired = desired_for(agent_client, certs)
    body, sent = apply_ok(agent_client, desired, material)
    assert len(sent) == 4
    assert body["changed"] == {"postfix": True, "dovecot": True, "nginx": True}
    assert {(v["port"], v["sni"]) for v in body["verified"]} >= {
        (stack.ports["smtp"], "mail.a.test")
    }
    assert set(body["timings"]) >= {"stage", "validate", "switch", "reload", "verify"}
    assert_served(stack, desired, test_ca[1])
    state = agent_client.state()
    assert state["applied_generation"] == desired["generation"] and state["last_error"] is None
    assert set(state["fingerprints"]) == set(sent)  # the bootstrap bundle was pruned


def test_resending_applied_generation_is_a_noop(agent_client, certs, material):
    desired = desired_for(agent_client, certs)
    first, _ = apply_ok(agent_client, desired, material)
    started = time.monotonic()
    again = agent_client.put_config({**desired, "bundles": {}})
    assert again.status_code == 200 and again.json() == first
    assert time.monotonic() - started < 1  # no reload, no verification the second time


def test_changing_one_domain_sends_one_bundle(agent_client, mail_stack, certs, material, test_ca):
    stack, _ = mail_stack
    apply_ok(agent_client, desired_for(agent_client, certs), material)
    desired = desired_for(agent_client, certs, which={"a.test": "a.test/renewed"})
    _body, sent = apply_ok(agent_client, desired, material)
    assert sent == [certs["a.test/renewed"].fingerprint]
    assert_served(stack, desired, test_ca[1])
    held = agent_client.state()["fingerprints"]
    assert certs["a.test"].fingerprint not in held  # the replaced bundle was pruned
    assert certs["a.test/renewed"].fingerprint in held


def test_webmail_only_change_leaves_mail_daemons_alone(
    agent_client, mail_stack, certs, material, test_ca
):
    stack, _ = mail_stack
    base = desired_for(agent_client, certs)
    apply_ok(agent_client, base, material)
    desired = {
        **base,
        "generation": base["generation"] + 1,
        "webmail": {**base["webmail"], "webmail.b.test": certs["b.test/renewed"].fingerprint},
    }
    body, _ = apply_ok(agent_client, desired, material)
    assert body["changed"] == {"postfix": False, "dovecot": False, "nginx": True}
    assert (
        served(stack, "https", "webmail.b.test", test_ca[1]) == certs["b.test/renewed"].fingerprint
    )
    assert served(stack, "imaps", "mail.b.test", test_ca[1]) == certs["b.test"].fingerprint


def test_nginx_certificate_change_replaces_one_file_without_a_reload(
    agent_client, mail_stack, certs, material, test_ca
):
    """The map names each name's file, not its certificate: a new certificate for a name already
    in the map rewrites that file only; nginx reads it at the next handshake, nothing reloads."""
    from app.agent.backends.nginx import accepting_workers, master_pid

    stack, _ = mail_stack
    base = desired_for(agent_client, certs)
    apply_ok(agent_client, base, material)
    include = stack.out("nginx") / "certpost.conf"
    by_name = stack.out("nginx") / "bundles" / "by-name"
    map_before = include.stat()
    other_before = (by_name / "webmail.b.test.pem").stat()
    master = master_pid(stack.nginx_dir / "nginx.conf")
    workers = accepting_workers(master)
    assert workers
    desired = {
        **base,
        "generation": base["generation"] + 1,
        "webmail": {**base["webmail"], "webmail.a.test": certs["a.test/renewed"].fingerprint},
    }
    body, _ = apply_ok(agent_client, desired, material)
    assert body["changed"]["nginx"] is True
    assert served(stack, "https", "webmail.a.test", test_ca[1]) == certs["a.test/renewed"].fingerprint
    assert accepting_workers(master) == workers  # no reload: the same workers serve it
    after = include.stat()
    assert (after.st_ino, after.st_mtime_ns) == (map_before.st_ino, map_before.st_mtime_ns)
    other = (by_name / "webmail.b.test.pem").stat()
    assert (other.st_ino, other.st_mtime_ns) == (other_before.st_ino, other_before.st_mtime_ns)
    mode = (by_name / "webmail.a.test.pem").stat().st_mode & 0o777
    assert mode == 0o640
    assert not [p for p in by_name.iterdir() if p.name.startswith(".")]  # no staged or backup left
    # dropping a name changes the map (reload) and removes its file
    fewer = {**desired, "generation": desired["generation"] + 1,
             "webmail": {k: v for k, v in desired["webmail"].items() if k != "webmail.c.test"}}
    apply_ok(agent_client, fewer, material)
    assert not (by_name / "webmail.c.test.pem").exists()
    assert served(stack, "https", "webmail.c.test", None) == fewer["webmail_default"]
    assert accepting_workers(master).isdisjoint(workers)


def test_replacing_the_server_certificate(agent_client, mail_stack, certs, material, test_ca):
    stack, _ = mail_stack
    desired = desired_for(agent_client, certs, server="server2")
    apply_ok(agent_client, desired, material)
    assert_served(stack, desired, test_ca[1])


def test_removing_a_name_returns_the_default(agent_client, mail_stack, certs, material, test_ca):
    stack, _ = mail_stack
    apply_ok(agent_client, desired_for(agent_client, certs), material)
    desired = desired_for(agent_client, certs, domains=("a.test", "b.test"))
    _body, sent = apply_ok(agent_client, desired, material)
    assert sent == []
    assert_served(stack, desired, test_ca[1], removed=("c.test",))
    assert certs["c.test"].fingerprint not in agent_client.state()["fingerprints"]


def delta_for(applied: dict, desired: dict) -> dict:
    """The delta document (docs/agent.md) that turns ``applied`` into ``desired``."""

    def changes(old: dict, new: dict) -> dict:
        out = {name: None for name in old.keys() - new.keys()}
        out.update({name: fp for name, fp in new.items() if old.get(name) != fp})
        return out

    return {
        "generation": desired["generation"],
        "base_digest": config_digest(applied),
        "digest": config_digest(desired),
        **{k: desired[k] for k in ("server_hostname", "server_certificate", "webmail_default")},
        "mail_changes": changes(applied["mail"], desired["mail"]),
        "webmail_changes": changes(applied["webmail"], desired["webmail"]),
    }


def push_delta(client, applied: dict, desired: dict, material, *, with_digest: bool = True) -> tuple:
    delta = delta_for(applied, desired)
    if not with_digest:
        del delta["digest"]
    held = set(client.state()["fingerprints"])
    new = {fp for fp in (*delta["mail_changes"].values(), *delta["webmail_changes"].values())}
    new |= {desired["server_certificate"], desired["webmail_default"]}
    bundles = {
        fp: {
            "key_pem": material[fp].key_pem,
            "certificate_pem": material[fp].cert_pem,
            "chain_pem": material[fp].chain_pem,
        }
        for fp in sorted(new - held - {None})
    }
    return client.put_config({**delta, "bundles": bundles}), delta


def test_delta_document_is_applied_and_served(agent_client, mail_stack, certs, material, test_ca):
    stack, _ = mail_stack
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    desired = desired_for(agent_client, certs, which={"b.test": "b.test/renewed"})
    response, delta = push_delta(agent_client, applied, desired, material)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "applied" and body["generation"] == desired["generation"]
    assert delta["mail_changes"] == {"mail.b.test": certs["b.test/renewed"].fingerprint}
    assert body["changed"] == {"postfix": True, "dovecot": True, "nginx": True}
    state = agent_client.state()
    assert state["applied_generation"] == desired["generation"]
    assert state["applied_digest"] == config_digest(desired)
    assert_served(stack, desired, test_ca[1])
    # the same generation again answers the same result (exactly once per generation)
    again, _ = push_delta(agent_client, applied, desired, material)
    assert again.status_code == 200 and again.json() == body


def test_delta_without_result_digest_answers_the_digest_reached(agent_client, mail_stack, certs, material, test_ca):
    """The controller computes a delta from the changed names alone, without the whole
    document's digest: the agent rebuilds, applies and says which digest it reached."""
    stack, _ = mail_stack
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    desired = desired_for(agent_client, certs, which={"b.test": "b.test/renewed"})
    response, delta = push_delta(agent_client, applied, desired, material, with_digest=False)
    assert "digest" not in delta
    assert response.status_code == 200, response.text
    assert response.json()["applied_digest"] == config_digest(desired) == agent_client.state()["applied_digest"]
    assert_served(stack, desired, test_ca[1])


def test_delta_removing_a_name(agent_client, mail_stack, certs, material, test_ca):
    stack, _ = mail_stack
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    desired = desired_for(agent_client, certs, domains=("a.test", "b.test"))
    response, delta = push_delta(agent_client, applied, desired, material)
    assert delta["mail_changes"] == {"mail.c.test": None}
    assert delta["webmail_changes"] == {"webmail.c.test": None}
    assert response.status_code == 200, response.text
    assert agent_client.state()["applied_digest"] == config_digest(desired)
    assert_served(stack, desired, test_ca[1], removed=("c.test",))
    assert certs["c.test"].fingerprint not in agent_client.state()["fingerprints"]


def test_delta_with_another_base_is_refused(agent_client, certs, material):
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    before = agent_client.state()
    other = desired_for(agent_client, certs, domains=("a.test",))  # not what the agent applied
    desired = desired_for(agent_client, certs, which={"a.test": "a.test/renewed"})
    response, _ = push_delta(agent_client, other, desired, material)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "base_mismatch"
    assert problem["applied_digest"] == config_digest(applied)
    assert agent_client.state() == before


def test_delta_with_a_wrong_result_digest_is_refused(agent_client, certs, material):
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    before = agent_client.state()
    desired = desired_for(agent_client, certs, which={"a.test": "a.test/renewed"})
    delta = delta_for(applied, desired)
    delta["mail_changes"]["mail.b.test"] = None  # a change the digest does not account for
    response = agent_client.put_config(delta)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "digest_mismatch"
    assert agent_client.state() == before


def test_delta_names_are_validated_like_full_documents(agent_client, certs, material):
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    desired = desired_for(agent_client, certs)
    bad_changes = (
        {"Mail.A.test": None},
        {"mail.a.test;": certs["a.test"].fingerprint},
        {"mail.a.test": "not-a-fingerprint"},
    )
    for bad in bad_changes:
        delta = {**delta_for(applied, desired), "mail_changes": bad}
        response = agent_client.put_config(delta)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_request"


def test_missing_bundles(agent_client, certs):
    applied = agent_client.state()["applied_generation"]
    desired = desired_for(
        agent_client, certs, which={"b.test": "b.test/renewed", "c.test": "c.test/renewed"}
    )
    desired["mail"]["mail.c.test"] = certs["c.test/renewed"].fingerprint
    held = set(agent_client.state()["fingerprints"])
    response = agent_client.put_config({**desired, "bundles": {}})
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "missing_bundles" and problem["status"] == 409
    expected = sorted(
        {certs["b.test/renewed"].fingerprint, certs["c.test/renewed"].fingerprint} - held
    )
    assert problem["missing"] == expected
    assert agent_client.state()["applied_generation"] == applied


def test_invalid_bundle_fails_only_its_names(agent_client, certs, material):
    """A bundle whose key is another certificate's is that name's failure (app.agent.isolation):
    its names are held back and reported, the rest applies; as the server-wide certificate it
    is refused as a whole (422 invalid_bundle)."""
    state = agent_client.state()
    bad = certs["b.test/renewed"]
    assert bad.fingerprint not in state["fingerprints"]
    desired = desired_for(
        agent_client, certs, domains=("a.test",), which={"a.test": "b.test/renewed"}
    )
    bundles = {
        fp: {
            "key_pem": material[fp].key_pem,
            "certificate_pem": material[fp].cert_pem,
            "chain_pem": material[fp].chain_pem,
        }
        for fp in {desired["server_certificate"]} - set(state["fingerprints"])
    }
    # the key of another certificate
    bundles[bad.fingerprint] = {
        "key_pem": certs["a.test"].key_pem,
        "certificate_pem": bad.cert_pem,
        "chain_pem": bad.chain_pem,
    }
    response = agent_client.put_config({**desired, "bundles": bundles})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {(f["name"], f["code"]) for f in body["failed_names"]} == {
        ("mail.a.test", "invalid_bundle"),
        ("webmail.a.test", "invalid_bundle"),
    }
    assert "BEGIN" not in response.text  # no key material in the answer
    after = agent_client.state()
    assert after["applied_generation"] == desired["generation"]
    assert bad.fingerprint not in after["fingerprints"]

    as_server = {**desired, "generation": agent_client.next_generation()}
    as_server["server_certificate"] = bad.fingerprint
    response = agent_client.put_config({**as_server, "bundles": {bad.fingerprint: bundles[bad.fingerprint]}})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "invalid_bundle" and problem["fingerprint"] == bad.fingerprint
    assert "BEGIN" not in response.text
    assert agent_client.state()["applied_generation"] == desired["generation"]


def test_stale_generation_is_refused(agent_client, certs):
    applied = agent_client.state()["applied_generation"]
    desired = desired_for(agent_client, certs)
    desired["generation"] = applied - 1
    response = agent_client.put_config(desired)
    assert response.status_code == 409 and response.json()["code"] == "stale_generation"


def test_unsigned_and_badly_signed_requests_are_refused(agent_client, certs):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    before = agent_client.state()
    body = json.dumps(desired_for(agent_client, certs, domains=())).encode()
    cases = {
        "signature_missing": {"sign": False},
        "signature_invalid": {"key": Ed25519PrivateKey.generate()},
        "signature_expired": {"now": time.time() - 1000},
    }
    for code, kwargs in cases.items():
        response = agent_client.request("PUT", "/v1/config", body, **kwargs)
        assert response.status_code == 401, (code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code
    # a body swapped under a valid signature
    from app.kit.signing import sign_request

    headers = sign_request(agent_client.key, "PUT", "/v1/config", b"{}")
    response = agent_client.request("PUT", "/v1/config", body, sign=False, headers=headers)
    assert response.status_code == 401 and response.json()["code"] == "signature_invalid"
    # a replay of a request that was accepted once
    headers = sign_request(agent_client.key, "GET", "/v1/state", b"")
    assert agent_client.request("GET", "/v1/state", sign=False, headers=headers).status_code == 200
    replay = agent_client.request("GET", "/v1/state", sign=False, headers=headers)
    assert replay.status_code == 401 and replay.json()["code"] == "nonce_replayed"
    after = agent_client.state()
    assert after["applied_generation"] == before["applied_generation"]
    assert after["fingerprints"] == before["fingerprints"]


def test_daemon_failure_rolls_back(agent_client, mail_stack, certs, material, test_ca):
    """The test hook writes Postfix bundles certificate-first: postmap accepts them, smtpd fails
    the handshake, verification catches it and the previous generation is put back."""
    stack, agent = mail_stack
    before = desired_for(agent_client, certs)
    apply_ok(agent_client, before, material)
    write_agent_config(stack, postfix_bundle_cert_first=True, verify_timeout=2)
    agent.restart()
    try:
        desired = desired_for(agent_client, certs, which={"c.test": "c.test/renewed"})
        response, _ = agent_client.push(desired, material)
        assert response.status_code == 422, response.text
        failure = response.json()
        assert failure["status"] == "failed" and failure["code"] == "apply_failed"
        assert failure["step"] == "verify" and failure["daemon"] == "postfix"
        assert failure["rolled_back"] is True
        assert "postfix log" in failure["message"]
        state = agent_client.state()
        assert state["applied_generation"] == before["generation"]
        assert state["last_error"]["step"] == "verify"
        assert_served(stack, before, test_ca[1])
    finally:
        write_agent_config(stack)
        agent.restart()
    # the same generation, retried without the hook, applies
    _body, _ = apply_ok(agent_client, desired, material)
    assert agent_client.state()["last_error"] is None
    assert_served(stack, desired, test_ca[1])


def test_delta_chain_is_journaled_restored_and_rolled_back(agent_client, mail_stack, certs, material, test_ca):
    """Deltas are digested from their changes (app.kit.digest version 2) and journaled in
    state.json: after a chain of them, a failed delta rolled back, and a restart, the agent
    holds and reports the digest a from-scratch computation gives, and takes the next delta."""
    stack, agent = mail_stack
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    assert "set-digest" in agent_client.state()["features"]
    d1 = desired_for(agent_client, certs, which={"b.test": "b.test/renewed"})
    assert push_delta(agent_client, applied, d1, material, with_digest=False)[0].status_code == 200
    d2 = desired_for(agent_client, certs, domains=("a.test", "b.test"), which={"b.test": "b.test/renewed"})
    response, _ = push_delta(agent_client, d1, d2, material)
    assert response.status_code == 200, response.text
    assert response.json()["applied_digest"] == config_digest(d2)
    state_dir = stack.state_dir
    assert len(list(state_dir.glob("applied-*.json"))) == 1
    journal = json.loads((state_dir / "state.json").read_text())["applied_changes"]
    assert journal["mail"] == {"mail.b.test": certs["b.test/renewed"].fingerprint, "mail.c.test": None}
    write_agent_config(stack, postfix_bundle_cert_first=True, verify_timeout=2)
    agent.restart()
    try:
        d3 = desired_for(agent_client, certs, domains=("a.test", "b.test"),
                         which={"a.test": "a.test/renewed", "b.test": "b.test/renewed"})
        failed, _ = push_delta(agent_client, d2, d3, material)
        assert failed.status_code == 422 and failed.json()["rolled_back"] is True
        assert agent_client.state()["applied_digest"] == config_digest(d2)
        assert_served(stack, d2, test_ca[1], removed=("c.test",))
    finally:
        write_agent_config(stack)
        agent.restart()
    assert agent_client.state()["applied_digest"] == config_digest(d2)  # the journal replayed
    response, _ = push_delta(agent_client, d2, d3, material, with_digest=False)
    assert response.status_code == 200, response.text
    assert agent_client.state()["applied_digest"] == config_digest(d3)
    assert_served(stack, d3, test_ca[1], removed=("c.test",))


def assert_copies_are_what_is_served(client, stack, desired: dict) -> None:
    """The bundle store holds exactly the referenced bundles, and each daemon's bundle copies
    are exactly those its files name: a delta prunes by its changed names alone, so nothing it
    does not name may be left behind (nor anything named removed)."""
    referenced = {desired["server_certificate"], desired["webmail_default"],
                  *desired["mail"].values(), *desired["webmail"].values()}
    assert set(client.state()["fingerprints"]) == referenced
    default = desired["server_certificate"]
    postfix = {p.name.split(".")[0] for p in (stack.out("postfix") / "bundles").glob("*.pem")}
    assert postfix == {fp for fp in desired["mail"].values() if fp != default}
    dovecot = {p.name.split(".")[0] for p in (stack.out("dovecot") / "bundles").glob("*.pem")}
    assert dovecot == {default, *desired["mail"].values()} - {None}


def test_a_chain_of_deltas_leaves_no_stray_copies(agent_client, mail_stack, certs, material, test_ca):
    """Renewals, a certificate given back, a removal and the domain added again, each a delta
    applied from its changed names alone (app.agent.apply, View.changes_since): what is served
    and what is kept on disk match the document after each."""
    stack, _ = mail_stack
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    steps = [
        {"which": {"a.test": "a.test/renewed"}},
        {"which": {"a.test": "a.test/renewed", "b.test": "b.test/renewed"}},
        {"domains": ("a.test", "b.test"), "which": {"a.test": "a.test/renewed"}},
        {"which": {"c.test": "c.test/renewed"}},
        {"which": {"c.test": "c.test/renewed", "a.test": "a.test/renewed"}},
    ]
    for step in steps:
        desired = desired_for(agent_client, certs, **step)
        response, _ = push_delta(agent_client, applied, desired, material)
        assert response.status_code == 200, response.text
        removed = tuple(d for d in DOMAINS if f"mail.{d}" not in desired["mail"])
        assert_served(stack, desired, test_ca[1], removed=removed)
        assert_copies_are_what_is_served(agent_client, stack, desired)
        applied = desired


def test_state_survives_an_agent_restart(agent_client, mail_stack):
    _, agent = mail_stack
    before = agent_client.state()
    fingerprint = agent.fingerprint
    agent.restart()
    assert agent.fingerprint == fingerprint  # same TLS identity: the controller's pin holds
    assert agent_client.state() == before


def _postfix_reload(stack) -> None:
    import subprocess

    subprocess.run(["postfix", "-c", str(stack.postfix_dir / "etc"), "reload"], check=True,
                   capture_output=True, timeout=30)


def test_a_16_shard_main_cf_keeps_working_and_the_switch_to_256_needs_only_a_reload(
    agent_client, mail_stack, certs, material, test_ca
):
    """An installation whose main.cf names the 16 SNI tables of earlier versions: after the
    upgrade the agent writes the 256 tables beside them at its start, keeps both up to date,
    and serves through the 16; the operator then puts the 256-table line in main.cf and runs
    ``postfix reload``, the names are served through the 256, and the next change removes
    the 16 files (docs/agent.md, "Upgrading from 16 shards")."""
    import re

    from app.agent.backends.postfix import shard_of, sni_maps_value
    from tests.support.daemons import wait_for_port

    stack, agent = mail_stack
    out = stack.out("postfix")
    main_cf = stack.postfix_dir / "etc" / "main.cf"
    original = main_cf.read_text()
    map_type = re.search(r"^tls_server_sni_maps = (\w+):", original, re.MULTILINE).group(1)
    suffix = ".lmdb" if map_type == "lmdb" else ".db"
    applied = desired_for(agent_client, certs)
    apply_ok(agent_client, applied, material)
    try:
        # The installation before the upgrade: main.cf names 16 tables, the 256 do not exist.
        agent.stop()
        main_cf.write_text(original.replace(
            f"tls_server_sni_maps = {sni_maps_value(out, map_type)}",
            f"tls_server_sni_maps = {sni_maps_value(out, map_type, 16)}"))
        for path in out.glob("sni.??*"):
            path.unlink()
        agent.start()  # the upgraded agent: its start writes both layouts from the applied document
        assert all((out / f"sni.{i:02x}{suffix}").exists() for i in range(256))
        assert all((out / f"sni.{i:x}{suffix}").exists() for i in range(16))
        _postfix_reload(stack)
        wait_for_port(stack.ports["smtp"])
        assert_served(stack, applied, test_ca[1])
        renewed = desired_for(agent_client, certs, which={"a.test": "a.test/renewed"})
        response, _ = push_delta(agent_client, applied, renewed, material)
        assert response.status_code == 200, response.text
        assert_served(stack, renewed, test_ca[1])  # through the 16 tables
        line = f"mail.a.test\t{out}/bundles/{certs['a.test/renewed'].fingerprint}.pem"
        for shards in (16, 256):  # both layouts hold the change
            assert line in (out / f"sni.{shard_of('mail.a.test', shards)}").read_text()
        # The operator's switch: the 256-table line, then postfix reload.
        main_cf.write_text(original)
        _postfix_reload(stack)
        wait_for_port(stack.ports["smtp"])
        assert_served(stack, renewed, test_ca[1])  # through the 256 tables, kept up to date
        again = desired_for(agent_client, certs, which={"a.test": "a.test/renewed", "b.test": "b.test/renewed"})
        response, _ = push_delta(agent_client, renewed, again, material)
        assert response.status_code == 200, response.text
        assert_served(stack, again, test_ca[1])
        assert not [p.name for p in out.glob("sni.?") if p.is_file()]
        assert not [p.name for p in out.glob(f"sni.?{suffix}")]
    finally:
        main_cf.write_text(original)
        _postfix_reload(stack)
        if agent.process is None:
            agent.start()
