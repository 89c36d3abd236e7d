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
import sys
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select, update

from app.accounts.caller import Caller
from app.context import AppContext
from app.deployments import applied, transitions
from app.deployments.agent_client import AgentClient, AgentError
from app.deployments.autoconfig import domains_of, load_autoconfig
from app.deployments.bundles import INLINE_AT_MOST, can_upload, read_bundles, upload_bundles
from app.deployments.claims import release, renew
from app.deployments.delta import SCALARS, delta_body, name_changes
from app.deployments.desired import load_desired, load_head, load_names
from app.deployments.models import Deployment, DeploymentAttempt, is_due
from app.kit.conditions import condition
from app.kit.digest import config_digest_v1, digest_for
from app.kit.logs import request_id_var
from app.kit.time import utc_now
from app.scheduler.heartbeat import Heartbeat, LeaseLost
from app.servers.models import Server

log = logging.getLogger("certpost.deployments")


@dataclass
class Outcome:
    applied: bool
    error: AgentError | None = None
    bytes_sent: int = 0
    response: dict | None = None
    agent_ahead: int | None = None  # the agent applied this generation, beyond ours
    generation: int = 0  # the generation that was sent
    head: dict | None = None  # the document's scalars, as sent
    changes: dict | None = None  # delta: host name -> fingerprint (None: removed), as sent
    document: dict | None = None  # full document (no bundles): what the agent now serves
    mode: str = "delta"  # "delta" | "full" | "same" (the agent already served it)


@dataclass
class Plan:
    """What one delivery sends, read in one short transaction."""

    generation: int
    agent: tuple[str | None, str | None]
    head: dict[str, str]
    base_digest: str | None  # None: the applied document is unknown, send it whole
    changes: dict[str, str | None] = field(default_factory=dict)
    # Domains whose mail.<d> was marked -> the host name autoconfiguration now advertises
    # (None: the domain is gone); unchanged values are sent again, which the agent absorbs.
    autoconfig: dict[str, str | None] = field(default_factory=dict)
    new_fingerprints: set[str] = field(default_factory=set)  # referenced by the delta, not yet applied


async def deliver(ctx: AppContext, server_id: str, owner: str) -> Outcome | None:
    """Deliver under the lease the worker claimed; None when there was nothing to do or the
    lease was lost (another worker delivers)."""

    async def keep(session, until) -> bool:
        return await renew(session, server_id, owner, until)

    # One id for the delivery's log lines here and the agent's access lines for its requests.
    token = request_id_var.set(f"delivery-{server_id}-{uuid.uuid4().hex[:8]}")
    try:
        async with Heartbeat(ctx, keep, name=f"deliver:{server_id}"):
            return await _deliver(ctx, server_id, owner)
    except LeaseLost:
        return None
    finally:
        request_id_var.reset(token)


async def _deliver(ctx: AppContext, server_id: str, owner: str) -> Outcome | None:
    started = utc_now()
    async with ctx.sessionmaker() as session:
        server = await session.get(Server, server_id)
        if server is None:
            return None
        deployment = await session.scalar(
            select(Deployment).where(Deployment.server_id == server_id, is_due())
        )
        if deployment is None:
            await release(session, server_id, owner)
            await session.commit()
            return None
        plan = await _plan(session, server, deployment.generation)
        await session.commit()

    outcome = await _push(ctx, server_id, plan)
    await _record(ctx, server_id, deployment.id, owner, started, outcome)
    return outcome


async def _plan(session, server: Server, generation: int) -> Plan:
    """The delta from the pending names alone (their desired and applied fingerprints), or a
    plan for the full document when nothing is known of what the agent applied."""
    head = await load_head(session, server)
    plan = Plan(generation, (server.agent_url, server.agent_tls_fingerprint), head, server.applied_digest)
    if plan.base_digest is None:
        return plan
    names = await applied.pending(session, server.id)
    desired = await load_names(session, server, names)
    plan.changes = name_changes(await applied.fingerprints(session, server.id, names), desired)
    marked_domains = domains_of(names)
    if marked_domains:
        plan.autoconfig = await load_autoconfig(session, server, marked_domains)
    referenced = {fp for fp in plan.changes.values() if fp} | {head["server_certificate"], head["webmail_default"]}
    before = server.applied_head or {}
    known = {before.get("server_certificate"), before.get("webmail_default")}
    plan.new_fingerprints = referenced - known - await applied.held(session, server.id, referenced - known)
    return plan


async def _bundles(ctx: AppContext, fingerprints: set[str]) -> dict[str, dict]:
    """Key, leaf and chain for each fingerprint in one body, the key unsealed only here, only
    for the push (a few: one change's; many go ahead in chunks, ``bundles.upload_bundles``)."""
    out: dict[str, dict] = {}
    async for chunk in read_bundles(ctx, sorted(fingerprints), byte_limit=sys.maxsize):
        out.update(chunk)
    return out


async def _push(ctx: AppContext, server_id: str, plan: Plan) -> Outcome:
    url, fingerprint = plan.agent
    try:
        client = AgentClient(url, fingerprint, ctx.controller_key, timeout=ctx.settings.agent_timeout_seconds,
                             pins=ctx.agent_pins())
    except AgentError as exc:
        return Outcome(False, exc, generation=plan.generation)
    try:
        if plan.base_digest is not None:
            try:
                return await _push_delta(ctx, client, plan)
            except AgentError as exc:
                if exc.code not in FULL_AFTER:
                    raise
                log.info("server %s: %s; sending the whole document", server_id, exc.code)
        return await _push_full(ctx, client, server_id, plan)
    except AgentError as exc:
        return Outcome(False, exc, bytes_sent=client.bytes_sent, generation=plan.generation)
    finally:
        await client.aclose()


# Answers to a delta after which the whole document goes instead: the agent's copy differs from
# the one recorded here (base_mismatch, digest_mismatch), an agent that cannot read the delta
# (400 invalid_request: one that still requires ``digest``), or one already at this generation
# or beyond, which the full path tells apart (same content, or an agent ahead of us).
FULL_AFTER = frozenset({"base_mismatch", "digest_mismatch", "invalid_request", "stale_generation"})


async def _push_delta(ctx: AppContext, client: AgentClient, plan: Plan) -> Outcome:
    """One request: the changes, and the bundles the applied document did not hold."""
    body = delta_body(plan.generation, plan.base_digest, plan.head, plan.changes, plan.autoconfig)
    new = plan.new_fingerprints
    if len(new) > INLINE_AT_MOST:  # many renewed at once: in chunks ahead, as for a full document
        state = await client.state()
        if can_upload(state, new):
            new = await upload_bundles(ctx, client, plan.generation, new, state)
    bundles = await _bundles(ctx, new)
    referenced = {fp for fp in plan.changes.values() if fp} | set(plan.head.values())
    response = await _put_config(ctx, client, body, bundles, referenced)
    return Outcome(True, bytes_sent=client.bytes_sent, response=response, generation=plan.generation,
                   head=plan.head, changes=plan.changes)


async def _put_config(ctx: AppContext, client: AgentClient, body: dict, bundles: dict, referenced: set[str]) -> dict:
    """PUT the document; when the agent names bundles it lacks (pruned meanwhile), add those
    the document references and try again."""
    for _ in range(3):
        try:
            return await client.put_config({**body, "bundles": bundles})
        except AgentError as exc:
            if exc.code != "missing_bundles":
                raise
            again = set(exc.body.get("missing", [])) & (referenced - bundles.keys())
            if not again:
                raise
            bundles.update(await _bundles(ctx, again))
    raise AgentError("agent_refused", "the agent refused the document three times", retryable=True)


async def _push_full(ctx: AppContext, client: AgentClient, server_id: str, plan: Plan) -> Outcome:
    """The whole document: the agent says what it holds, and only missing bundles travel."""
    async with ctx.sessionmaker() as session:
        server = await session.get(Server, server_id)
        desired = await load_desired(session, server)
    desired.generation = plan.generation
    state = await client.state()
    document = desired.document(autoconfig="autoconfig" in (state.get("features") or []))
    head = {key: document[key] for key in SCALARS}
    agent_generation = int(state.get("applied_generation", 0))
    # Version 2 (a set hash) for an agent announcing ``set-digest``, version 1 otherwise: O(names),
    # on this full path only (a delta's digest is the agent's, computed from the changes).
    same = agent_generation == plan.generation and state.get("applied_digest") == digest_for(
        state.get("features"), document)
    if same:
        return Outcome(True, bytes_sent=client.bytes_sent, response=state, generation=plan.generation,
                       head=head, document=document, mode="same")
    if agent_generation >= plan.generation:
        return Outcome(False, bytes_sent=client.bytes_sent, agent_ahead=agent_generation, generation=plan.generation)
    missing = desired.fingerprints - set(state.get("fingerprints", []))
    if can_upload(state, missing):  # in chunks ahead of the document; left: the ones it refused
        missing = await upload_bundles(ctx, client, plan.generation, missing, state)
    bundles = await _bundles(ctx, missing)
    response = await _put_config(ctx, client, document, bundles, desired.fingerprints)
    return Outcome(True, bytes_sent=client.bytes_sent, response=response, generation=plan.generation,
                   head=head, document=document, mode="full")


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
    """Write the outcome, under the lease. The deployment row may carry a newer generation by
    now (a change made during the delivery raised it in place, outbox.py): then the generation
    that was sent is recorded as the server's applied state, and the row stays due."""
    now = utc_now()
    settings = ctx.settings
    async with ctx.sessionmaker() as session:
        # A write first: it checks the lease and takes the server row (PostgreSQL's row lock,
        # SQLite's write lock) in one statement, so what is read next cannot change before this
        # transaction commits: neither the lease nor a deployment that a concurrent change raises
        # in place (read before it, on SQLite, the row could be raised after being read).
        held = await session.execute(
            update(Server).where(Server.id == server_id, Server.deploy_lease_owner == owner)
            .values(deploy_lease_owner=owner).execution_options(synchronize_session=False)
        )
        if held.rowcount != 1:
            log.warning("server %s: lease lost during the delivery; another worker records it", server_id)
            return
        server = await session.get(Server, server_id)
        deployment = await session.get(Deployment, deployment_id)
        moved = deployment.generation != outcome.generation
        caller = Caller.for_worker(owner)
        error = outcome.error.condition(now) if outcome.error else None
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
        if agent_answered(outcome):
            server.agent_contact_at = now
        if not moved:
            deployment.attempts += 1
            deployment.updated_at = now
        if outcome.agent_ahead is not None:
            _continue_after(server, deployment, outcome.agent_ahead, now)
        elif outcome.applied:
            await _record_applied(session, server, outcome)
            transitions.applied(session, deployment, outcome.generation, failed_names(outcome.response), caller,
                                now=now, moved=moved)
            log.info("server %s applied generation %s (%s, %d bytes)", server_id, outcome.generation, outcome.mode,
                     outcome.bytes_sent)
            held_back = failed_names(outcome.response)
            if held_back:
                log.warning("server %s generation %s: %d name(s) held back by the agent: %s", server_id,
                            outcome.generation, len(held_back), ", ".join(f["name"] for f in held_back[:10]))
        else:
            transitions.failed(session, deployment, outcome.generation, error, caller, now=now, moved=moved,
                               retryable=outcome.error.retryable, base=settings.retry_base_seconds,
                               cap=settings.retry_max_seconds)
            log.warning("server %s generation %s: %s (%s)", server_id, outcome.generation, outcome.error.code,
                        outcome.error.detail)
        await release(session, server_id, owner)
        await session.commit()


def agent_answered(outcome: Outcome) -> bool:
    """Whether the agent itself replied (over the pinned TLS, so it was this agent): a success,
    a refusal or a stale generation all say it is alive; a timeout, a refused connection or a
    certificate that is not the pinned one do not."""
    return outcome.applied or outcome.agent_ahead is not None or (
        outcome.error is not None and outcome.error.status is not None)


async def _record_applied(session, server: Server, outcome: Outcome) -> None:
    """The server's applied state: generation, digest, scalars and the names that changed (all
    of them after a full document). Names marked up to the sent generation are delivered."""
    server.applied_generation = max(server.applied_generation, outcome.generation)
    digest = (outcome.response or {}).get("applied_digest")
    if outcome.document is not None:
        await applied.record_document(session, server.id, outcome.document)
        digest = digest or config_digest_v1(outcome.document)  # an agent from before deltas
    else:
        await applied.record_changes(session, server.id, outcome.changes or {})
    # An agent that did not say which digest it reached: the next delivery sends everything.
    server.applied_digest = digest if isinstance(digest, str) and len(digest) == 64 else None
    server.applied_head = outcome.head
    await applied.clear_pending(session, server.id, outcome.generation)


def _continue_after(server: Server, deployment: Deployment, agent_generation: int, now) -> None:
    """The agent applied a generation we never wrote (re-registered server, restored database):
    continue numbering after it, so the agent accepts the current desired state as new."""
    deployment.last_error = condition(
        "agent_ahead", f"the agent had applied generation {agent_generation} from earlier; continuing after it", at=now)
    if server.desired_generation > agent_generation:
        return  # the waiting row already carries a generation the agent will accept
    server.desired_generation = agent_generation + 1
    deployment.generation = server.desired_generation
    deployment.status, deployment.next_attempt_at, deployment.attempts = "pending", now, 0
    deployment.reason = f"continue after the agent's generation {agent_generation}"
    log.warning("server %s: agent is at generation %s; continuing from %s", server.id, agent_generation,
                server.desired_generation)
