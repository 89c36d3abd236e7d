"""Fixtures for the agent (a pytest plugin module; tests/agent/conftest.py imports it): real
Postfix, Dovecot and nginx on loopback, the agent as a subprocess, and a client that signs
requests like the controller does.

Reusable by the controller's end-to-end tests: add ``pytest_plugins = ["tests.agent.fixtures"]``
to the root tests/conftest.py (and drop the import in tests/agent/conftest.py), then use:

* ``controller_key`` — the Ed25519 key the agent trusts (its public half is in agent.toml);
* ``mail_stack`` — ``(Stack, AgentProcess)``: ports, paths, ``stack.agent_url``,
  ``agent.fingerprint`` (the pinned TLS fingerprint), ``agent.restart()``;
* ``agent_client`` — :class:`SignedAgentClient` for that agent;
* ``test_ca`` — the CA (root + intermediate) the test certificates come from, ``ca_file``.
"""

from __future__ import annotations

import json
import os
import ssl

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.kit.signing import public_key_to_text, sign_request
from tests.support.daemons import AgentProcess, Stack, running_stack
from tests.support.pki import CA, Issued, write_pem


class SignedAgentClient:
    """Talks to an agent over HTTPS, signing every request with the controller key.

    The agent's certificate is pinned: the client trusts exactly the agent's own self-signed
    certificate (state_dir/tls/agent.crt) and checks its fingerprint.
    """

    def __init__(self, stack: Stack, agent: AgentProcess, key: Ed25519PrivateKey) -> None:
        self.stack, self.agent, self.key = stack, agent, key
        context = ssl.create_default_context(cafile=str(stack.state_dir / "tls" / "agent.crt"))
        self.http = httpx.Client(base_url=stack.agent_url, verify=context, timeout=60)

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        headers: dict | None = None,
        sign: bool = True,
        key: Ed25519PrivateKey | None = None,
        now: float | None = None,
        nonce: str | None = None,
    ) -> httpx.Response:
        sent = {"Content-Type": "application/json"} if body else {}
        if sign:
            sent.update(sign_request(key or self.key, method, path, body, now=now, nonce=nonce))
        sent.update(headers or {})
        return self.http.request(method, path, content=body, headers=sent)

    def state(self) -> dict:
        response = self.request("GET", "/v1/state")
        assert response.status_code == 200, response.text
        return response.json()

    def put_config(self, desired: dict) -> httpx.Response:
        return self.request("PUT", "/v1/config", json.dumps(desired).encode())

    def push(self, desired: dict, material: dict[str, Issued]) -> tuple[httpx.Response, list[str]]:
        """What the controller does: ask what the agent holds, send only the missing bundles.

        ``desired`` has no ``bundles``; ``material`` maps fingerprint -> Issued. Returns the
        response and the fingerprints that were sent.
        """
        held = set(self.state()["fingerprints"])
        referenced = {
            desired["server_certificate"],
            desired["webmail_default"],
            *desired.get("mail", {}).values(),
            *desired.get("webmail", {}).values(),
        }
        send = sorted(referenced - held)
        bundles = {
            fp: {
                "key_pem": material[fp].key_pem,
                "certificate_pem": material[fp].cert_pem,
                "chain_pem": material[fp].chain_pem,
            }
            for fp in send
        }
        return self.put_config({**desired, "bundles": bundles}), send

    def next_generation(self) -> int:
        return self.state()["applied_generation"] + 1

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def controller_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def mail_stack(controller_key):
    """Set CERTPOST_KEEP_STACK=1 to keep the directory (daemon logs) after the run."""
    keep = os.environ.get("CERTPOST_KEEP_STACK") == "1"
    with running_stack(public_key_to_text(controller_key.public_key()), keep=keep) as (
        stack,
        agent,
    ):
        yield stack, agent


@pytest.fixture(scope="session")
def agent_client(mail_stack, controller_key):
    stack, agent = mail_stack
    client = SignedAgentClient(stack, agent, controller_key)
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    """(intermediate CA that issues leaves, path of the root certificate file)."""
    root = CA.create("certpost agent test root")
    issuing = root.intermediate("certpost agent test intermediate")
    ca_file = write_pem(tmp_path_factory.mktemp("ca") / "root.pem", root.cert_pem)
    return issuing, str(ca_file)
