"""The agent's Courier-IMAP backend against a real, private Courier-IMAP 5 on loopback.

An agent with only a ``[courier]`` section writes ``TLS_CERTFILE`` and one
``TLS_CERTFILE.<name>`` per bound name; couriertls reads them per connection (no reload).
Served certificates are checked like a client would: STARTTLS on the IMAP port and IMAPS, with
each SNI name, an unknown one, and none.
"""

from __future__ import annotations

import shutil

import pytest

from app.kit.signing import public_key_to_text
from tests.agent.fixtures import SignedAgentClient
from tests.support.courier import courier_available, make_courier, start_courier, stop_courier
from tests.support.daemons import AgentProcess, Stack, bootstrap_agent, make_root
from tests.support.ports import free_port
from tests.support.tlsprobe import served_fingerprint

pytestmark = [
    pytest.mark.daemons,
    pytest.mark.skipif(not courier_available(), reason="courier-imap is not installed"),
]

PROTOCOLS = {"imap": "imap-starttls", "imaps": "imaps"}


@pytest.fixture(scope="module")
def courier_stack(controller_key):
    root = make_root("certpost-courier-")
    out = root / "agent-out" / "courier"
    stack = Stack(root, "mx1.host.test", public_key_to_text(controller_key.public_key()))
    stack.ports = {"agent": free_port()}
    courier = make_courier(root / "courier", out / "imapd.pem")
    stack.ports.update(courier.ports)
    stack.agent_config.write_text(f"""\
[listen]
host = "127.0.0.1"
port = {stack.ports["agent"]}

[agent]
state_dir = "{stack.state_dir}"
controller_public_key = "{stack.controller_public_key}"
hostname = "{stack.hostname}"
verify_timeout = 4

[courier]
directory = "{out}"
certfile = "{out}/imapd.pem"
verify = [{{port = {courier.ports["imap"]}, protocol = "imap-starttls"}},
          {{port = {courier.ports["imaps"]}, protocol = "imaps"}}]
""")
    agent = AgentProcess(stack)
    try:
        bootstrap_agent(stack)
        start_courier(courier)
        agent.start()
        client = SignedAgentClient(stack, agent, controller_key)
        yield stack, client, out
        client.close()
    finally:
        agent.stop()
        stop_courier(courier)
        shutil.rmtree(root, ignore_errors=True)


def served(stack, port: str, sni: str | None, ca_file: str | None = None) -> str:
    return served_fingerprint(
        "127.0.0.1",
        stack.ports[port],
        PROTOCOLS[port],
        sni,
        ca_file=ca_file,
        check_hostname=bool(sni and ca_file),
    )


def test_courier_per_domain_certificates(courier_stack, test_ca):
    stack, client, out = courier_stack
    ca, ca_file = test_ca
    server = ca.issue([stack.hostname])
    a, b = ca.issue(["mail.a.test"]), ca.issue(["mail.b.test"])
    a2 = ca.issue(["mail.a.test"])
    material = {c.fingerprint: c for c in (server, a, b, a2)}

    desired = {
        "generation": client.next_generation(),
        "server_hostname": stack.hostname,
        "server_certificate": server.fingerprint,
        "webmail_default": server.fingerprint,
        "mail": {"mail.a.test": a.fingerprint, "mail.b.test": b.fingerprint},
        "webmail": {},
    }
    response, _ = client.push(desired, material)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changed"]["courier"] is True
    assert {(v["sni"], v["protocol"]) for v in body["verified"]} >= {
        ("mail.a.test", "imaps"),
        ("mail.b.test", "imap-starttls"),
    }
    for port in PROTOCOLS:
        assert served(stack, port, None, ca_file) == server.fingerprint, port
        assert served(stack, port, "unknown.example.test") == server.fingerprint, port
        assert served(stack, port, "mail.a.test", ca_file) == a.fingerprint, port
        assert served(stack, port, "mail.b.test", ca_file) == b.fingerprint, port
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert files == ["imapd.pem", "imapd.pem.mail.a.test", "imapd.pem.mail.b.test"]
    for p in out.iterdir():
        assert p.stat().st_mode & 0o777 == 0o640, p
    assert list(out.glob(".*")) == []  # no staged or backup files left behind

    # Renew one, remove the other.
    desired = {
        **desired,
        "generation": client.next_generation(),
        "mail": {"mail.a.test": a2.fingerprint},
    }
    response, _ = client.push(desired, material)
    assert response.status_code == 200, response.text
    for port in PROTOCOLS:
        assert served(stack, port, None, ca_file) == server.fingerprint, port
        assert served(stack, port, "mail.a.test", ca_file) == a2.fingerprint, port
        assert served(stack, port, "mail.b.test") == server.fingerprint, port
    assert not (out / "imapd.pem.mail.b.test").exists()
    assert list(out.glob(".*")) == []


def test_courier_wildcard_and_conflict(courier_stack, test_ca):
    """``*.c.test`` is written as ``TLS_CERTFILE.c.test``; an exact name keeps its own file."""
    stack, client, out = courier_stack
    ca, ca_file = test_ca
    server = ca.issue([stack.hostname])
    wild, exact = ca.issue(["*.c.test"]), ca.issue(["mail.c.test"])
    material = {c.fingerprint: c for c in (server, wild, exact)}
    desired = {
        "generation": client.next_generation(),
        "server_hostname": stack.hostname,
        "server_certificate": server.fingerprint,
        "webmail_default": server.fingerprint,
        "mail": {"*.c.test": wild.fingerprint, "mail.c.test": exact.fingerprint},
        "webmail": {},
    }
    response, _ = client.push(desired, material)
    assert response.status_code == 200, response.text
    assert (out / "imapd.pem.c.test").exists()
    assert not (out / "imapd.pem.mail.a.test").exists()
    for port in PROTOCOLS:
        assert served(stack, port, "imap.c.test", ca_file) == wild.fingerprint, port
        assert served(stack, port, "mail.c.test", ca_file) == exact.fingerprint, port

    # c.test and *.c.test would share TLS_CERTFILE.c.test: the backend's check refuses it, and
    # the agent holds back only the name that brought the conflict (app.agent.isolated).
    before = client.state()["applied_generation"]
    conflict = {
        **desired,
        "generation": before + 1,
        "mail": {**desired["mail"], "c.test": exact.fingerprint},
    }
    response, _ = client.push(conflict, material)
    assert response.status_code == 200, response.text
    [failure] = response.json()["failed_names"]
    assert failure["name"] == "c.test" and failure["code"] == "config_refused"
    assert failure["serving"] is None
    assert "c.test" in failure["message"]
    assert client.state()["applied_generation"] == before + 1
    for port in PROTOCOLS:
        assert served(stack, port, "mail.c.test", ca_file) == exact.fingerprint, port
        assert served(stack, port, "imap.c.test", ca_file) == wild.fingerprint, port
