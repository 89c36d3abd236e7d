"""Delivering the latest generation of one server to its agent, and recording the outcome.

Three short transactions around the network call, never one held open across it:
1. read the server's desired configuration and mark older undelivered generations superseded;
2. (no transaction) ask the agent what it holds, send the document with only the missing
   bundles, and wait for its verdict (it validates, reloads, verifies and rolls back itself);
3. record the attempt, the deployment's status and the server's applied generation.

All of it runs under the worker's lease on the server, renewed by a heartbeat; a worker that
loses the lease stops, and step 3 writes only while the server's lease is still this worker's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import undefer

from app.certificates.models import Certificate
from app.context import AppContext
from app.deployments.agent_client import AgentClient, AgentError
from app.deployments.claims import DUE, release, renew
from app.deployments.delta import delta_document
from app.deployments.desired import DesiredConfig, load_desired
from app.deployments.heartbeat import Heartbeat, LeaseLost
from app.deployments.models import Deployment, DeploymentAttempt
from app.deployments.policy import next_attempt_at
from app.kit.crypto import Sealed
from app.kit.digest import config_digest
from app.kit.time import utc_now
from app.servers.models import Server

log = logging.getLogger("certpost.deployments")


@dataclass
class Outcome:
    applied: bool
    error: AgentError | None = None
    bytes_sent: int = 0
    response: dict | None = None
    agent_ahead: int | None = None  # the agent applied this generation, beyond ours
    document: dict | None = None  # what the agent now serves (host names and fingerprints)


async def deliver(ctx: AppContext, server_id: str, owner: str) -> Outcome | None:
    """Deliver under the lease the worker claimed; None when there was nothing to do or the
    lease was lost (another worker delivers)."""

    async def keep(session, until) -> bool:
        return await renew(session, server_id, owner, until)

    try:
        async with Heartbeat(ctx, keep, name=f"deliver:{server_id}"):
            return await _deliver(ctx, server_id, owner)
    except LeaseLost:
        return None


async def _deliver(ctx: AppContext, server_id: str, owner: str) -> Outcome | None:
    started = utc_now()
    async with ctx.sessionmaker() as session:
        server = await session.get(Server, server_id, options=[undefer(Server.applied_config)])
        if server is None:
            return None
        deployment = await session.scalar(
            select(Deployment)
            .where(Deployment.server_id == server_id, Deployment.status.in_(DUE))
            .order_by(Deployment.generation.desc())
            .limit(1)
        )
        if deployment is None:
            await release(session, server_id, owner)
            await session.commit()
            return None
        await session.execute(
            update(Deployment)
            .where(Deployment.server_id == server_id, Deployment.status.in_(DUE), Deployment.generation < deployment.generation)
            .values(status="superseded", updated_at=started)
            .execution_options(synchronize_session=False)
        )
        desired = await load_desired(session, server)
        desired.generation = deployment.generation
        agent = (server.agent_url, server.agent_tls_fingerprint)
        applied_config = server.applied_config
        await session.commit()

    outcome = await _push(ctx, agent, desired, applied_config)
    await _record(ctx, server_id, deployment.id, owner, started, outcome)
    return outcome


async def _bundles(ctx: AppContext, desired: DesiredConfig, fingerprints: set[str]) -> dict[str, dict]:
    """Key, leaf and chain for each fingerprint, the key unsealed only here, only for the push."""
    if not fingerprints:
        return {}
    ids = [desired.certificate_ids[fp] for fp in fingerprints]
    async with ctx.sessionmaker() as session:
        certs = list(await session.scalars(select(Certificate).where(Certificate.id.in_(ids))))
    bundles = {}
    for cert in certs:
        key = ctx.master_key.open(Sealed(cert.key_ciphertext, cert.key_wrapped, cert.master_key_id), cert.id)
        bundles[cert.fingerprint_sha256] = {
            "key_pem": key.decode(),
            "certificate_pem": cert.certificate_pem,
            "chain_pem": cert.chain_pem,
        }
    return bundles


async def _push(ctx: AppContext, agent: tuple[str | None, str | None], desired: DesiredConfig,
                applied_config: dict | None) -> Outcome:
    url, fingerprint = agent
    try:
        client = AgentClient(url, fingerprint, ctx.controller_key, timeout=ctx.settings.agent_timeout_seconds)
    except AgentError as exc:
        return Outcome(False, exc)
    document = desired.document()
    try:
        state = await client.state()
        agent_generation = int(state.get("applied_generation", 0))
        same_content = state.get("applied_digest") == config_digest(document)
        if agent_generation == desired.generation and same_content:
            return Outcome(True, bytes_sent=client.bytes_sent, response=state, document=document)
        if agent_generation >= desired.generation:
            return Outcome(False, bytes_sent=client.bytes_sent, agent_ahead=agent_generation)
        missing = desired.fingerprints - set(state.get("fingerprints", []))
        bundles = await _bundles(ctx, desired, missing)
        body = {**document, "bundles": bundles}
        if _can_send_delta(state, applied_config):
            body = {**delta_document(applied_config, document), "bundles": bundles}
        for _ in range(3):
            try:
                response = await client.put_config(body)
                return Outcome(True, bytes_sent=client.bytes_sent, response=response, document=document)
            except AgentError as exc:
                if exc.code in ("base_mismatch", "digest_mismatch") and "base_digest" in body:
                    body = {**document, "bundles": bundles}  # the agent's copy differs: send it all
                elif exc.code == "missing_bundles":
                    # The agent pruned something between our two requests: send what it names.
                    again = set(exc.body.get("missing", [])) & desired.fingerprints
                    bundles.update(await _bundles(ctx, desired, again))
                else:
                    raise
        raise AgentError("agent_refused", "the agent refused the document three times", retryable=True)
    except AgentError as exc:
        return Outcome(False, exc, bytes_sent=client.bytes_sent)
    finally:
        await client.aclose()


def _can_send_delta(state: dict, applied_config: dict | None) -> bool:
    """Only to an agent that supports it and holds exactly what we last saw it apply."""
    return (
        applied_config is not None
        and "delta-config" in state.get("features", ())
        and state.get("applied_digest") == config_digest(applied_config)
    )


_FAILURE_KEYS = ("name", "service", "fingerprint", "code", "message", "serving")


def failed_names(response: dict | None) -> list[dict]:
    """The names the agent held back on what they served before (its ``failed_names``, in the
    ``PUT /v1/config`` answer or ``GET /v1/state``), kept to the documented members.

    The generation still counts as applied: the agent's applied document (and digest) is the
    whole desired document, so the next delta is computed against it as usual, and the agent
    carries the failure forward until the name is bound to something servable or unbound.
    """
    out = []
    for item in (response or {}).get("failed_names") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            entry = {k: item.get(k) for k in _FAILURE_KEYS}
            entry["message"] = str(entry["message"] or "")[:1000]
            out.append(entry)
    return out


async def _record(ctx: AppContext, server_id: str, deployment_id: str, owner: str, started, outcome: Outcome) -> None:
    now = utc_now()
    settings = ctx.settings
    async with ctx.sessionmaker() as session:
        server = await session.get(Server, server_id, with_for_update=True)
        if server is None or server.deploy_lease_owner != owner:
            log.warning("server %s: lease lost during the delivery; another worker records it", server_id)
            return
        deployment = await session.get(Deployment, deployment_id)
        deployment.attempts += 1
        deployment.updated_at = now
        error = outcome.error.as_dict() if outcome.error else None
        session.add(
            DeploymentAttempt(
                deployment_id=deployment_id,
                started_at=started,
                finished_at=now,
                outcome="applied" if outcome.applied else "agent_ahead" if outcome.agent_ahead is not None else "failed",
                error=error,
                bytes_sent=outcome.bytes_sent,
            )
        )
        if outcome.agent_ahead is not None:
            await _continue_after(session, server, deployment, outcome.agent_ahead, now)
        elif outcome.applied:
            deployment.status, deployment.applied_at, deployment.last_error = "applied", now, None
            deployment.failed_names = failed_names(outcome.response)
            server.applied_generation = max(server.applied_generation, deployment.generation)
            server.applied_config = outcome.document
            log.info("server %s applied generation %s (%d bytes)", server_id, deployment.generation, outcome.bytes_sent)
            if deployment.failed_names:
                log.warning("server %s generation %s: %d name(s) held back by the agent: %s", server_id,
                            deployment.generation, len(deployment.failed_names),
                            ", ".join(f["name"] for f in deployment.failed_names[:10]))
        else:
            deployment.last_error = error
            if outcome.error.retryable:
                deployment.status = "retrying"
                deployment.next_attempt_at = next_attempt_at(
                    now, deployment.attempts, base=settings.retry_base_seconds, cap=settings.retry_max_seconds
                )
            else:
                deployment.status = "failed"
            log.warning("server %s generation %s: %s (%s)", server_id, deployment.generation, outcome.error.code, outcome.error.detail)
        await release(session, server_id, owner)
        await session.commit()


async def _continue_after(session, server: Server, deployment: Deployment, agent_generation: int, now) -> None:
    """The agent applied a generation we never wrote (re-registered server, restored database):
    continue numbering after it, so the agent accepts the current desired state as new."""
    deployment.status = "superseded"
    deployment.last_error = {
        "code": "agent_ahead",
        "detail": f"the agent had applied generation {agent_generation} from earlier; continuing after it",
    }
    if server.desired_generation > agent_generation:
        return  # a newer change is already queued with a generation the agent will accept
    server.desired_generation = agent_generation + 1
    session.add(Deployment(server_id=server.id, generation=server.desired_generation, status="pending",
                           reason=f"continue after the agent's generation {agent_generation}", next_attempt_at=now))
    log.warning("server %s: agent is at generation %s; continuing from %s", server.id, agent_generation,
                server.desired_generation)
