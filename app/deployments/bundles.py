"""Sending the bundles an agent lacks in chunks, before the document (``PUT /v1/bundles``).

A full apply of 10,000 domains used to travel as one body: every missing bundle (key, leaf,
chain) decrypted at once, JSON-encoded, signed and held while sent, several copies of tens of
megabytes in the controller at the peak. To an agent that announces ``bundle-upload`` in its
``GET /v1/state`` ``features``, the bundles go instead in chunks of at most ``CHUNK_BUNDLES``
certificates and ``CHUNK_BYTES`` bytes (and half the agent's announced ``max_body_bytes``):
each chunk reads only the columns a bundle needs, unseals those keys, is sent, and is dropped
before the next is read. The agent checks and stores them without applying anything and keeps
them from pruning until the generation they were sent for is applied; the document then
follows without bundles (docs/agent.md). An agent without the feature gets the old single body
(``delivery._bundles``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from sqlalchemy import select

from app.certificates.models import Certificate
from app.context import AppContext
from app.deployments.agent_client import AgentClient
from app.kit.crypto import Sealed

log = logging.getLogger("certpost.deployments")

FEATURE = "bundle-upload"
CHUNK_BUNDLES = 250
CHUNK_BYTES = 2 * 1024 * 1024
# A one-domain change sends one or two bundles: inline in the document, one request, as before.
INLINE_AT_MOST = 16


def can_upload(state: dict, missing: set[str]) -> bool:
    """Chunks for an agent that announces them, when there are more than a few bundles."""
    return len(missing) > INLINE_AT_MOST and FEATURE in state.get("features", ())


def _byte_limit(state: dict) -> int:
    announced = state.get("max_body_bytes")
    if isinstance(announced, int) and announced > 0:
        return max(1, min(CHUNK_BYTES, announced // 2))
    return CHUNK_BYTES


async def read_bundles(ctx: AppContext, fps: list[str], byte_limit: int) -> AsyncIterator[dict[str, dict]]:
    """Bundles for the fingerprints ``fps``, ``CHUNK_BUNDLES`` per query, cut at ``byte_limit``
    (a bundle larger than the limit goes alone; the agent's gate then decides). The same
    material stored twice is one bundle: either row's key serves."""
    columns = (Certificate.id, Certificate.fingerprint_sha256, Certificate.certificate_pem, Certificate.chain_pem,
               Certificate.key_ciphertext, Certificate.key_wrapped, Certificate.master_key_id)
    for start in range(0, len(fps), CHUNK_BUNDLES):
        async with ctx.sessionmaker() as session:
            rows = (await session.execute(
                select(*columns).where(Certificate.fingerprint_sha256.in_(fps[start:start + CHUNK_BUNDLES])))).all()
        chunk: dict[str, dict] = {}
        size = 0
        for cid, fp, cert_pem, chain_pem, ciphertext, wrapped, key_id in rows:
            if fp in chunk:
                continue
            key = ctx.master_key.open(Sealed(ciphertext, wrapped, key_id), cid).decode()
            bundle = {"key_pem": key, "certificate_pem": cert_pem, "chain_pem": chain_pem}
            weight = len(key) + len(cert_pem) + len(chain_pem) + 200  # JSON escaping and names
            if chunk and size + weight > byte_limit:
                yield chunk
                chunk, size = {}, 0
            chunk[fp] = bundle
            size += weight
        if chunk:
            yield chunk


async def upload_bundles(ctx: AppContext, client: AgentClient, generation: int, missing: set[str],
                         state: dict) -> set[str]:
    """Send the ``missing`` bundles in chunks for ``generation``; returns the fingerprints the
    agent refused (they go in the document, where they are their names' failure, as before)."""
    refused: set[str] = set()
    sent = 0
    async for chunk in read_bundles(ctx, sorted(missing), _byte_limit(state)):
        answer = await client.put_bundles(generation, chunk)
        sent += len(chunk)
        for item in answer.get("refused") or []:
            if isinstance(item, dict) and item.get("fingerprint") in chunk:
                refused.add(item["fingerprint"])
        del chunk
    log.info("sent %d bundle(s) in chunks for generation %s (%d refused)", sent, generation, len(refused))
    return refused
