"""The agent and a real nginx (workers as www-data): the webmail default is what HTTPS serves
without SNI and for the server's host name, it is verified there, and a default nginx cannot
serve fails the whole change while every daemon keeps what it served."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.daemons import PROTOCOL_OF
from tests.support.pki import Issued
from tests.support.tlsprobe import served_fingerprint

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def certs(test_ca, mail_stack) -> dict[str, Issued]:
    ca, _ = test_ca
    stack, _ = mail_stack
    return {
        "mail": ca.issue([stack.hostname]),
        "webmail": ca.issue([stack.hostname]),
        "webmail/2": ca.issue([stack.hostname, f"webmail.{stack.hostname}"]),
        "webmail/rsa1024": ca.issue([stack.hostname], key=rsa.generate_private_key(65537, 1024)),
        "one": ca.issue(["webmail.one.test"]),
        "two": ca.issue(["webmail.two.test"]),
    }


@pytest.fixture(scope="module")
def material(certs) -> dict[str, Issued]:
    return {c.fingerprint: c for c in certs.values()}


def document(client, certs, webmail_default: str, **more_webmail: str) -> dict:
    return {
        "generation": client.next_generation(),
        "server_hostname": client.stack.hostname,
        "server_certificate": certs["mail"].fingerprint,
        "webmail_default": certs[webmail_default].fingerprint,
        "mail": {},
        "webmail": {"webmail.one.test": certs["one"].fingerprint, "webmail.two.test": certs["two"].fingerprint,
                    **{name: certs[which].fingerprint for name, which in more_webmail.items()}},
    }


def https(stack, sni, ca_file=None) -> str:
    return served_fingerprint("127.0.0.1", stack.ports["https"], "https", sni,
                              ca_file=ca_file, check_hostname=ca_file is not None)


def assert_served(stack, doc, certs, ca_file) -> None:
    assert https(stack, None) == doc["webmail_default"]
    assert https(stack, stack.hostname, ca_file) == doc["webmail_default"]
    assert https(stack, "webmail.one.test", ca_file) == certs["one"].fingerprint
    assert https(stack, "webmail.two.test", ca_file) == certs["two"].fingerprint
    for port in ("smtp", "imaps", "pop3s"):  # the mail daemons keep the server-wide certificate
        fp = served_fingerprint("127.0.0.1", stack.ports[port], PROTOCOL_OF[port], None)
        assert fp == doc["server_certificate"], port


def test_default_served_and_verified_for_the_host_name(agent_client, mail_stack, certs, material, test_ca):
    stack, _ = mail_stack
    ca_file = test_ca[1]
    for key in ("webmail", "webmail/2", "mail"):  # set, change, back to the mail certificate
        doc = document(agent_client, certs, key)
        response, _ = agent_client.push(doc, material)
        assert response.status_code == 200, response.text
        verified = {(v["port"], v["sni"]): v["fingerprint"] for v in response.json()["verified"]}
        assert verified[(stack.ports["https"], stack.hostname)] == doc["webmail_default"]
        assert verified[(stack.ports["https"], None)] == doc["webmail_default"]
        assert (stack.ports["smtp"], stack.hostname) not in verified  # mail: unchanged probes
        assert_served(stack, doc, certs, ca_file)


def test_a_default_nginx_cannot_serve_fails_the_whole_change(agent_client, mail_stack, certs, material, test_ca):
    stack, _ = mail_stack
    before = document(agent_client, certs, "webmail")
    response, _ = agent_client.push(before, material)
    assert response.status_code == 200, response.text
    broken = document(agent_client, certs, "webmail/rsa1024")
    response, _ = agent_client.push(broken, material)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "apply_failed" and problem["step"] == "check"
    assert problem["rolled_back"] is True and "webmail_default" in problem["message"]
    assert agent_client.state()["applied_generation"] == before["generation"]
    assert_served(stack, before, certs, test_ca[1])


def test_a_change_returns_only_once_the_old_workers_stopped_accepting(agent_client, mail_stack, certs, material,
                                                                      test_ca):
    """``nginx -s reload`` returns before the old workers retire, and they read the old map,
    whose files of dropped names the agent deletes after verifying. Frozen with SIGSTOP, the old
    worker cannot take its QUIT: the push must wait for it rather than report success while it
    still accepts. (The change adds a name: a certificate change alone reloads nothing.)"""
    import os
    import signal
    import threading
    import time

    from app.agent.backends.nginx import accepting_workers, master_pid

    stack, _ = mail_stack
    response, _ = agent_client.push(document(agent_client, certs, "webmail"), material)
    assert response.status_code == 200, response.text
    master = master_pid(stack.nginx_dir / "nginx.conf")
    old = accepting_workers(master)
    assert old, "the nginx of the stack has a worker"
    outcome = {}

    def push() -> None:
        changed = document(agent_client, certs, "webmail/2", **{"webmail.three.test": "two"})
        outcome["response"], _ = agent_client.push(changed, material)
        outcome["still_accepting"] = old & accepting_workers(master)

    for pid in old:
        os.kill(pid, signal.SIGSTOP)
    pushing = threading.Thread(target=push)
    try:
        pushing.start()
        pushing.join(4)
    finally:
        for pid in old:
            os.kill(pid, signal.SIGCONT)
    pushing.join(30)
    assert outcome["response"].status_code == 200, outcome["response"].text
    assert outcome["still_accepting"] == set(), outcome["response"].json()
    deadline = time.monotonic() + 10
    while old & accepting_workers(master) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_served(stack, document(agent_client, certs, "webmail/2") | {"generation": 0}, certs, test_ca[1])
