"""Blast radius of one, against real Postfix, Dovecot and nginx: one tenant's unusable
certificate fails only that tenant's names; everything else in the change is applied.

Tenant A binds a certificate whose key OpenSSL will not serve (DSA-2048: no TLS 1.3 signature
scheme; RSA-1024: "ee key too small" at SECLEVEL 2). Before isolation the agent's verification
failed, the whole change rolled back, and every later change on the server failed with it.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from tests.support.daemons import PROTOCOL_OF
from tests.support.pki import Issued
from tests.support.tlsprobe import served_fingerprint

pytestmark = pytest.mark.daemons

MAIL_PORTS = ("smtp", "smtps", "imap", "imaps", "pop3", "pop3s")


@pytest.fixture(scope="module")
def certs(test_ca, mail_stack) -> dict[str, Issued]:
    ca, _ = test_ca
    stack, _ = mail_stack
    names = ["mail.a.test", "webmail.a.test"]
    b_names = ["mail.b.test", "webmail.b.test"]
    return {
        "server": ca.issue([stack.hostname]),
        "a": ca.issue(names),
        "a/dsa": ca.issue(names, key=dsa.generate_private_key(2048)),
        "a/fixed": ca.issue(names),
        "b": ca.issue(b_names),
        "b/renewed": ca.issue(b_names),
        "b/again": ca.issue(b_names),
        "c/rsa1024": ca.issue(
            ["mail.c.test", "webmail.c.test"], key=rsa.generate_private_key(65537, 1024)
        ),
        "server/rsa1024": ca.issue([stack.hostname], key=rsa.generate_private_key(65537, 1024)),
    }


@pytest.fixture(scope="module")
def material(certs) -> dict[str, Issued]:
    return {c.fingerprint: c for c in certs.values()}


def document(client, certs, server="server", **bound: str) -> dict:
    """A full document binding mail.<d> and webmail.<d> to ``certs[bound[d]]``."""
    fp = {d: certs[key].fingerprint for d, key in bound.items()}
    return {
        "generation": client.next_generation(),
        "server_hostname": client.stack.hostname,
        "server_certificate": certs[server].fingerprint,
        "webmail_default": certs[server].fingerprint,
        "mail": {f"mail.{d}.test": f for d, f in fp.items()},
        "webmail": {f"webmail.{d}.test": f for d, f in fp.items()},
    }


def served_everywhere(stack, sni: str) -> set[str]:
    """What the six mail ports and HTTPS serve for ``mail.<sni>`` / ``webmail.<sni>``."""
    seen = {
        served_fingerprint("127.0.0.1", stack.ports[p], PROTOCOL_OF[p], f"mail.{sni}")
        for p in MAIL_PORTS
    }
    seen.add(served_fingerprint("127.0.0.1", stack.ports["https"], "https", f"webmail.{sni}"))
    return seen


def push(client, desired, material) -> dict:
    response, _ = client.push(desired, material)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "applied" and body["generation"] == desired["generation"]
    assert "BEGIN" not in response.text
    return body


def failed(body: dict) -> set[tuple[str, str, str, str | None]]:
    return {(f["service"], f["name"], f["code"], f["serving"]) for f in body["failed_names"]}


def test_one_tenants_unusable_key_fails_only_its_names(agent_client, mail_stack, certs, material):
    stack, agent = mail_stack
    a = certs["a"].fingerprint
    body = push(agent_client, document(agent_client, certs, a="a", b="b"), material)
    assert body["failed_names"] == []
    assert served_everywhere(stack, "a.test") == {a}
    assert served_everywhere(stack, "b.test") == {certs["b"].fingerprint}

    # A binds the DSA certificate; B renews in the same change.
    bad = certs["a/dsa"].fingerprint
    body = push(agent_client, document(agent_client, certs, a="a/dsa", b="b/renewed"), material)
    assert failed(body) == {
        ("mail", "mail.a.test", "handshake_failed", a),
        ("webmail", "webmail.a.test", "handshake_failed", a),
    }
    assert {f["fingerprint"] for f in body["failed_names"]} == {bad}
    assert all(f["message"] for f in body["failed_names"])
    assert served_everywhere(stack, "a.test") == {a}  # A stays on what it served before
    assert served_everywhere(stack, "b.test") == {certs["b/renewed"].fingerprint}
    state = agent_client.state()
    assert state["last_error"] is None and state["failed_names"] == body["failed_names"]
    assert a in state["fingerprints"]  # still served, so still held

    # The held-back names survive a restart of the agent (state.json).
    agent.restart()
    assert agent_client.state()["failed_names"] == state["failed_names"]

    # B's later change deploys; A is still reported, still on its old certificate.
    body = push(agent_client, document(agent_client, certs, a="a/dsa", b="b/again"), material)
    assert {f["name"] for f in body["failed_names"]} == {"mail.a.test", "webmail.a.test"}
    assert served_everywhere(stack, "b.test") == {certs["b/again"].fingerprint}
    assert served_everywhere(stack, "a.test") == {a}

    # A good certificate for A clears it.
    body = push(agent_client, document(agent_client, certs, a="a/fixed", b="b/again"), material)
    assert body["failed_names"] == []
    assert served_everywhere(stack, "a.test") == {certs["a/fixed"].fingerprint}
    assert agent_client.state()["failed_names"] == []


def test_a_new_name_with_an_unusable_key_gets_the_server_default(
    agent_client, mail_stack, certs, material
):
    stack, _ = mail_stack
    default = certs["server"].fingerprint
    body = push(agent_client, document(agent_client, certs, b="b", c="c/rsa1024"), material)
    assert failed(body) == {
        ("mail", "mail.c.test", "key_refused", None),
        ("webmail", "webmail.c.test", "key_refused", None),
    }
    assert "too small" in body["failed_names"][0]["message"]
    assert served_everywhere(stack, "c.test") == {default}
    assert served_everywhere(stack, "b.test") == {certs["b"].fingerprint}
    # Unbinding the bad name clears the report.
    assert push(agent_client, document(agent_client, certs, b="b"), material)["failed_names"] == []


def test_an_unusable_server_certificate_still_fails_the_whole_change(
    agent_client, mail_stack, certs, material
):
    stack, _ = mail_stack
    before = document(agent_client, certs, b="b")
    push(agent_client, before, material)
    desired = document(agent_client, certs, server="server/rsa1024", b="b/renewed")
    response, _ = agent_client.push(desired, material)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "apply_failed" and problem["step"] == "check"
    assert "too small" in problem["message"]
    state = agent_client.state()
    assert state["applied_generation"] == before["generation"]
    assert served_everywhere(stack, "b.test") == {certs["b"].fingerprint}
    assert (
        served_fingerprint("127.0.0.1", stack.ports["smtp"], PROTOCOL_OF["smtp"], None)
        == before["server_certificate"]
    )


def test_a_name_the_daemon_config_refuses_is_held_back(agent_client, mail_stack, certs, material):
    """nginx cannot build its ``map`` hash for a 252-character name (map_hash_bucket_size 64):
    ``nginx -t`` refuses the whole file. Bisection with validation-only runs finds that name;
    it is held back and everything else in the change is applied."""
    stack, _ = mail_stack
    long = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 55]) + ".test"
    push(agent_client, document(agent_client, certs, b="b"), material)
    desired = document(agent_client, certs, b="b/renewed", a="a")
    desired["webmail"][long] = certs["b/renewed"].fingerprint
    desired["mail"][long] = certs["b/renewed"].fingerprint
    body = push(agent_client, desired, material)
    assert failed(body) == {("webmail", long, "config_refused", None)}
    assert "map_hash" in body["failed_names"][0]["message"]
    assert served_everywhere(stack, "b.test") == {certs["b/renewed"].fingerprint}
    assert served_everywhere(stack, "a.test") == {certs["a"].fingerprint}
    for port in MAIL_PORTS:  # the mail daemons take the name
        assert (
            served_fingerprint("127.0.0.1", stack.ports[port], PROTOCOL_OF[port], long)
            == certs["b/renewed"].fingerprint
        )
    assert (
        served_fingerprint("127.0.0.1", stack.ports["https"], "https", long)
        == desired["webmail_default"]
    )
    # A later change without the name clears it.
    assert push(agent_client, document(agent_client, certs, b="b"), material)["failed_names"] == []

