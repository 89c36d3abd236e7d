"""Running one certificate order in the worker, from challenge to stored (and bound) result.

The ACME exchange is blocking (certbot's ``acme`` library on ``requests``), so it runs in a
thread; the event loop keeps serving the API and other deliveries meanwhile. HTTP-01 answers
are published through the agent of the server hosting the domain, from that thread, by
handing the coroutine back to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar

from sqlalchemy import select

from app.accounts.caller import SYSTEM, Caller
from app.acme import transitions
from app.acme.accounts import acme_client
from app.acme.ari import choose_renewal_at, default_renewal_at, renewal_info
from app.acme.dns import DnsError
from app.acme.errors import AcmeError
from app.acme.models import CertificateOrder
from app.acme.order import issue
from app.acme.providers import kind_of
from app.acme.repository import AcmeRepository
from app.acme.service import guarded, provider_secrets
from app.acme.solvers import Dns01Solver, Http01Solver
from app.acme.store import store_issued
from app.certificates.models import Certificate
from app.context import AppContext
from app.deployments.agent_client import AgentClient
from app.domains.models import Domain
from app.kit.conditions import condition
from app.kit.time import utc_now
from app.outbound import OutboundGuard
from app.problems import AppError
from app.scheduler.heartbeat import Heartbeat, LeaseLost
from app.servers.models import Server

log = logging.getLogger("certpost.acme")

# The worker running this order, set by ``run_order`` in the order's own task: ``_finish``
# writes only while the order's lease is still that worker's.
_lease_owner: ContextVar[str | None] = ContextVar("certpost_order_lease_owner", default=None)


async def _dns_solver(ctx: AppContext, order: CertificateOrder) -> Dns01Solver:
    """The order's provider, plus every other provider its account may use that declares zones
    (the candidates for a delegated `_acme-challenge` CNAME target), each built by its kind."""
    async with ctx.sessionmaker() as session:
        repo = AcmeRepository(session)
        row = await repo.provider(order.dns_provider_id) if order.dns_provider_id else None
        others = [r for r in await repo.providers_declaring_zones(order.account_id) if row is None or r.id != row.id]
    if row is None:
        raise _Failure("dns_update", "dns_provider_missing", "the order's DNS provider was deleted")

    def build(r):
        guard = OutboundGuard.for_dns(ctx.settings) if guarded(r) else None
        return kind_of(r.kind).build(r.settings, provider_secrets(ctx.master_key, r), guard)

    # The platform's provider on an account's order: the account chooses where its CNAMEs point,
    # so the platform's credentials follow them only into zones the platform declared.
    follows = order.account_id is None or row.account_id is not None
    own = [order.domain] if order.domain else [n.removeprefix("*.") for n in order.names]
    return Dns01Solver(build(row), others=[build(r) for r in others], default_follows=follows, own_domains=own,
                       propagation_timeout=ctx.settings.acme_propagation_timeout,
                       propagation_interval=ctx.settings.acme_propagation_interval)


async def _http_solver(ctx: AppContext, order: CertificateOrder) -> Http01Solver:
    async with ctx.sessionmaker() as session:
        domain = await session.scalar(select(Domain).where(Domain.name == order.domain)) if order.domain else None
        server = await session.get(Server, domain.server_id) if domain is not None else None
    if server is None or not server.agent_url:
        raise _Failure("http_publish", "http01_unavailable", "no agent can answer HTTP-01 for these names")
    loop = asyncio.get_running_loop()
    names = list(order.names)

    def call(method: str, token: str, key_authorization: str | None = None) -> None:
        async def go():
            client = AgentClient(server.agent_url, server.agent_tls_fingerprint, ctx.controller_key, timeout=30,
                                 pins=ctx.agent_pins())
            try:
                if method == "PUT":
                    await client.put_challenge(token, key_authorization, names)
                else:
                    await client.delete_challenge(token)
            finally:
                await client.aclose()

        asyncio.run_coroutine_threadsafe(go(), loop).result(timeout=60)

    return Http01Solver(lambda token, ka: call("PUT", token, ka), lambda token: call("DELETE", token))


class _Failure(Exception):
    def __init__(self, step: str, code: str, detail: str):
        super().__init__(detail)
        self.step, self.code, self.detail = step, code, detail


def _caller() -> Caller:
    """The worker running this order, as the event log names it."""
    owner = _lease_owner.get()
    return Caller.for_worker(owner) if owner else SYSTEM


def _authorizations(order: CertificateOrder, status: str, failed: set[str] = frozenset()) -> list[dict]:
    return [{"identifier": n, "challenge": order.challenge,
             "status": "invalid" if n in failed or n.removeprefix("*.") in failed else status} for n in order.names]


def _failed_identifiers(problem: dict | None) -> set[str]:
    if not problem:
        return set()
    found = {sub.get("identifier", {}).get("value") for sub in problem.get("subproblems") or []}
    if problem.get("identifier"):
        found.add(problem["identifier"].get("value"))
    return {f for f in found if f}


async def run_order(ctx: AppContext, order_id: str, *, owner: str | None = None) -> None:
    """Run an order the worker ``owner`` claimed, renewing its lease while the order runs
    (minutes, when DNS propagates slowly); stop and write nothing if the lease is lost."""
    if owner is None:
        return await _run_order(ctx, order_id)

    async def keep(session, until) -> bool:
        return await AcmeRepository(session).renew_order_lease(order_id, owner, until)

    _lease_owner.set(owner)
    try:
        async with Heartbeat(ctx, keep, name=f"order:{order_id}"):
            await _run_order(ctx, order_id)
    except LeaseLost:
        return None


async def _run_order(ctx: AppContext, order_id: str) -> None:
    started = time.monotonic()
    async with ctx.sessionmaker() as session:
        order = await AcmeRepository(session).order(order_id)
        session.expunge(order)
    try:
        solver = await (_dns_solver(ctx, order) if order.challenge == "dns-01" else _http_solver(ctx, order))
        client = await acme_client(ctx)
        issued = await ctx.run_blocking(issue, client, order.names, order.key_type, solver,
                                         poll_interval=ctx.settings.acme_poll_interval,
                                         timeout=ctx.settings.acme_order_timeout)
        renewal_at = default_renewal_at(issued.not_before, issued.not_after)
        try:
            window = await ctx.run_blocking(renewal_info, client, issued.certificate_pem)
            if window is not None:
                renewal_at = choose_renewal_at(window, now=utc_now())
        except AcmeError as exc:  # ARI is advisory: keep the default when it fails
            log.warning("renewal information unavailable for order %s: %s", order_id, exc.detail)
        await store_issued(ctx, order, issued, renewal_at, _caller(), authorizations=_authorizations(order, "valid"),
                           duration_ms=int((time.monotonic() - started) * 1000))
        log.info("order %s valid after %.2f s", order_id, time.monotonic() - started)
    except (AcmeError, DnsError, _Failure, AppError) as exc:
        error = _condition_of(exc, utc_now())
        failed = _failed_identifiers((error.get("details") or {}).get("problem"))
        await _fail(ctx, order_id, error, started, _authorizations(order, "pending" if failed else "unknown", failed))
        log.warning("order %s invalid at %s: %s", order_id, error["step"], error["message"])
    except Exception as exc:  # unexpected: record it on the order, keep the worker alive
        log.error("order %s crashed: %s", order_id, type(exc).__name__, exc_info=exc)
        error = condition("internal_error", type(exc).__name__, at=utc_now(), step="internal")
        await _fail(ctx, order_id, error, started, _authorizations(order, "unknown"))


def _condition_of(exc: Exception, now) -> dict:
    if isinstance(exc, AcmeError):
        return exc.condition(now)
    if isinstance(exc, _Failure):
        return condition(exc.code, exc.detail, at=now, step=exc.step)
    if isinstance(exc, DnsError):
        return condition(getattr(exc, "code", "dns_update_failed"), str(exc), at=now, step="dns_update")
    assert isinstance(exc, AppError)
    return condition(exc.code, exc.detail, at=now, step="store")


async def _fail(ctx: AppContext, order_id: str, error: dict, started: float, authorizations) -> None:
    now = utc_now()
    async with ctx.sessionmaker() as session:
        order = await AcmeRepository(session).order(order_id)
        if _lease_owner.get() not in (None, order.lease_owner):
            log.warning("order %s: lease lost; another worker finishes it", order_id)
            return
        caller = _caller()
        transitions.order_invalid(session, order, error, caller, now=now, authorizations=authorizations,
                                  duration_ms=int((time.monotonic() - started) * 1000))
        if order.purpose == "renewal" and order.certificate_id:
            cert = await session.get(Certificate, order.certificate_id)
            if cert is not None:  # the certificate shows the customer's form; the full detail stays on the order
                transitions.renewal_failed(session, cert, error, caller, now=now,
                                           base=ctx.settings.renewal_retry_base_seconds,
                                           cap=ctx.settings.renewal_retry_max_seconds)
        await session.commit()

