"""The agent's pinned TLS context is fetched once per agent, and an agent that comes back with
another certificate is still refused by name (app/deployments/agent_client.py, ``PinStore``).

A real TLS server on loopback (Python's ``http.server`` over ``ssl``) stands in for the agent:
what is tested is the client's handshakes, not the agent's answers.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.deployments import agent_client
from app.deployments.agent_client import AgentClient, AgentError, PinStore
from tests.support.pki import CA
from tests.support.ports import free_port


class _State(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"applied_generation": 3}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def tls_server(tmp: Path, port: int, issued):
    cert, key = tmp / f"{issued.fingerprint}.crt", tmp / f"{issued.fingerprint}.key"
    cert.write_text(issued.cert_pem)
    key.write_text(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _State)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def probes(monkeypatch):
    """How many times the pin was fetched (a connection of its own)."""
    calls = []
    real = agent_client._fetch_pinned_context

    def counted(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(agent_client, "_fetch_pinned_context", counted)
    return calls


async def _state(url: str, fingerprint: str, pins: PinStore | None) -> dict:
    client = AgentClient(url, fingerprint, Ed25519PrivateKey.generate(), timeout=5, pins=pins)
    try:
        return await client.state()
    finally:
        await client.aclose()


async def test_the_pin_is_fetched_once_per_agent(tmp_path, probes):
    ca = CA.create("pins")
    first, second = ca.issue(["agent-a.test"]), ca.issue(["agent-b.test"])
    port_a, port_b = free_port(), free_port()
    pins = PinStore()
    with tls_server(tmp_path, port_a, first), tls_server(tmp_path, port_b, second):
        for _ in range(3):
            assert await _state(f"https://127.0.0.1:{port_a}", first.fingerprint, pins) == {"applied_generation": 3}
            assert await _state(f"https://127.0.0.1:{port_b}", second.fingerprint, pins) == {"applied_generation": 3}
        assert len(probes) == 2  # one per agent, not one per client
        # Without a store (the default) every client fetches its own.
        await _state(f"https://127.0.0.1:{port_a}", first.fingerprint, None)
        assert len(probes) == 3


async def test_an_agent_with_another_certificate_is_refused_by_name(tmp_path, probes):
    ca = CA.create("pins")
    registered, other = ca.issue(["agent.test"]), ca.issue(["agent.test"])
    port = free_port()
    pins = PinStore()
    url = f"https://127.0.0.1:{port}"
    with tls_server(tmp_path, port, registered):
        await _state(url, registered.fingerprint, pins)
    with tls_server(tmp_path, port, other):  # same address, a new certificate (a reinstalled agent)
        with pytest.raises(AgentError) as refused:
            await _state(url, registered.fingerprint, pins)
        assert refused.value.code == "agent_tls_pin_mismatch"
        assert other.fingerprint in refused.value.detail
        assert pins.get(("127.0.0.1", port, registered.fingerprint)) is None
        # Registering the new fingerprint works at once.
        assert await _state(url, other.fingerprint, pins) == {"applied_generation": 3}
    # An agent that went away: unreachable, as before the store.
    with pytest.raises(AgentError) as gone:
        await _state(url, other.fingerprint, pins)
    assert gone.value.code == "agent_unreachable"


def test_the_store_is_bounded():
    pins = PinStore(limit=2)
    for i in range(3):
        pins.put(("h", i, "f"), object())
    assert pins.get(("h", 0, "f")) is None
    assert pins.get(("h", 1, "f")) is not None and pins.get(("h", 2, "f")) is not None
