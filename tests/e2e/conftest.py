"""A private mail server (Postfix, Dovecot, nginx) with a real agent, registered through the API.

The stack is fresh for this module (an agent remembers the generations it applied), and the
controller signs with the key this stack's agent trusts.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.kit.signing import public_key_to_text
from tests.support.daemons import running_stack


@pytest.fixture(scope="module")
def e2e_controller_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def stack(e2e_controller_key):
    with running_stack(public_key_to_text(e2e_controller_key.public_key())) as (stack, agent):
        yield stack, agent


@pytest.fixture
def controller(context, e2e_controller_key):
    """Sign pushes with the stack's key and retry fast, for the length of one test."""
    saved = (context.controller_key, context.settings.retry_base_seconds, context.settings.retry_max_seconds)
    context.controller_key = e2e_controller_key
    context.settings.retry_base_seconds, context.settings.retry_max_seconds = 0.1, 0.5
    yield context
    context.controller_key, context.settings.retry_base_seconds, context.settings.retry_max_seconds = saved


@pytest.fixture
def sent_documents(monkeypatch):
    """Every document the controller PUTs to an agent (the real request still goes out), with
    ``bundles`` reduced to the sorted fingerprints it carried: no key material is kept."""
    from app.deployments.agent_client import AgentClient

    sent: list[dict] = []
    real = AgentClient.put_config

    async def spy(self, document):
        sent.append({k: v for k, v in document.items() if k != "bundles"} | {"bundles": sorted(document.get("bundles", ()))})
        return await real(self, document)

    monkeypatch.setattr(AgentClient, "put_config", spy)
    return sent
