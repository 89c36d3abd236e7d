"""A full apply through ``PUT /v1/bundles`` chunks, against a real agent and real daemons, and the
single-body path for an agent that does not announce ``bundle-upload`` (docs/agent.md).

The domains are seeded through the services (not HTTP) so a few hundred names stay quick.
"""

from __future__ import annotations

import asyncio

import pytest

from app.accounts.caller import Caller
from app.certificates import material
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.deployments import bundles as chunked
from app.deployments.agent_client import AgentClient
from app.domains.repository import DomainRepository
from app.domains.service import DomainService
from tests.support.api import create_server
from tests.support.tlsprobe import served_fingerprint
from tests.support.worker import server_applied, work_until

pytestmark = pytest.mark.daemons

ADMIN = Caller(token_id="test", role="admin", account_id=None)
NAMES = 300
CHUNK = 64


async def seed(context, issuing, server_id: str, account_id: str, names: list[str], create: bool) -> dict[str, str]:
    """Each domain bound (webmail and mail) to a new certificate; returns name -> fingerprint."""
    out = {}
    async with context.sessionmaker() as session:
        certs = CertificateService(CertificateRepository(session), context.master_key)
        domains = DomainService(DomainRepository(session), certs)
        for name in names:
            issued = issuing.issue([f"webmail.{name}", f"mail.{name}"])
            mat = material.from_pem(issued.cert_pem, issued.key_pem, chain_pem=issued.chain_pem, trust=context.trust)
            cert = await certs.store(mat, account_id=account_id, name=name, source="upload", caller=ADMIN)
            if create:
                await domains.create(name, server_id, account_id)
            await domains.bind(ADMIN, name, "webmail", cert.id)
            await domains.bind(ADMIN, name, "mail", cert.id)
            out[name] = issued.fingerprint
        await session.commit()
    return out


@pytest.fixture
def spy(monkeypatch):
    """What travels: each chunk's fingerprints and each document's bundles."""
    seen = {"chunks": [], "documents": []}
    put_bundles, put_config = AgentClient.put_bundles, AgentClient.put_config

    async def spy_bundles(self, generation, bundles):
        seen["chunks"].append((generation, sorted(bundles)))
        return await put_bundles(self, generation, bundles)

    async def spy_config(self, document):
        seen["documents"].append({"generation": document["generation"], "bundles": sorted(document.get("bundles", {}))})
        return await put_config(self, document)

    monkeypatch.setattr(AgentClient, "put_bundles", spy_bundles)
    monkeypatch.setattr(AgentClient, "put_config", spy_config)
    monkeypatch.setattr(chunked, "CHUNK_BUNDLES", CHUNK)
    return seen


async def served(stack, service: str, name: str) -> str:
    port, protocol = (stack.ports["smtps"], "smtps") if service == "mail" else (stack.ports["https"], "https")
    return await asyncio.to_thread(served_fingerprint, "127.0.0.1", port, protocol, f"{service}.{name}")


async def test_full_apply_in_chunks_then_fallbacks(client, admin, controller, stack, test_intermediate, spy,
                                                   monkeypatch, customer_headers):
    stack, agent = stack
    account_id, _customer = await customer_headers()
    server = await create_server(client, admin, name="chunks", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    names = [f"c{i:03d}.chunk.test" for i in range(NAMES)]
    fps = await seed(controller, test_intermediate, server["id"], account_id, names, create=True)
    await work_until(controller, server_applied(client, admin, server["id"]), timeout=240)

    # Every missing bundle went ahead in chunks of at most CHUNK, none in the document.
    chunks = spy["chunks"]
    assert len(chunks) >= NAMES // CHUNK and all(len(fp_list) <= CHUNK for _, fp_list in chunks)
    uploaded = [fp for _, fp_list in chunks for fp in fp_list]
    assert len(uploaded) == len(set(uploaded)) and set(fps.values()) <= set(uploaded)
    final = spy["documents"][-1]
    assert final["bundles"] == [] and {g for g, _ in chunks} == {final["generation"]}
    for name in (names[0], names[NAMES // 2], names[-1]):
        assert await served(stack, "mail", name) == fps[name]
        assert await served(stack, "webmail", name) == fps[name]

    # The agent refuses one bundle of a chunk: it then travels in the document, as before.
    spy["chunks"].clear(), spy["documents"].clear()
    real = AgentClient.put_bundles

    async def refuse_first(self, generation, bundles):
        first = min(bundles)
        answer = await real(self, generation, {fp: b for fp, b in bundles.items() if fp != first})
        answer["refused"].append({"fingerprint": first, "code": "invalid_bundle", "message": "test"})
        return answer

    monkeypatch.setattr(AgentClient, "put_bundles", refuse_first)
    changed = await seed(controller, test_intermediate, server["id"], account_id, names[:20], create=False)
    await work_until(controller, server_applied(client, admin, server["id"]), timeout=120)
    assert len(spy["documents"][-1]["bundles"]) == 1
    for name in (names[0], names[19]):
        assert await served(stack, "mail", name) == changed[name]

    # An agent that does not announce bundle-upload gets every bundle in the document.
    monkeypatch.setattr(AgentClient, "put_bundles", real)
    spy["documents"].clear()
    state = AgentClient.state

    async def old_agent(self):
        answer = await state(self)
        answer["features"] = [f for f in answer.get("features", []) if f != "bundle-upload"]
        return answer

    monkeypatch.setattr(AgentClient, "state", old_agent)
    calls = []
    monkeypatch.setattr(AgentClient, "put_bundles", lambda *a: calls.append(a))
    changed = await seed(controller, test_intermediate, server["id"], account_id, names[20:40], create=False)
    await work_until(controller, server_applied(client, admin, server["id"]), timeout=120)
    assert calls == [] and sorted(spy["documents"][-1]["bundles"]) == sorted(changed.values())
    assert await served(stack, "webmail", names[39]) == changed[names[39]]
