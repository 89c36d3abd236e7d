"""The controller's part of a one-domain change, and the deployment claim, as a server grows.

    .venv/bin/python bench/changes.py [--quick] [--sizes 1000,10000,100000] [--db sqlite|postgres|both]

For each size, one server holds N domains, each with its own certificate bound to webmail and
mail, fully applied (``applied_names`` holds all 2N names, as after a full delivery). Then, in
process and without an agent, a one-domain change is timed in its three controller steps:

- **bind**: the request's transaction (`DomainService.bind` + commit: binding upsert, generation
  bump, waiting deployment raised, the name marked);
- **plan**: the delivery's first transaction (`delivery._plan`: the marked names' desired and
  applied fingerprints, the scalars, which bundles are new) plus the delta body and the one new
  bundle unsealed;
- **record**: the delivery's last transaction (`delivery._record` with the agent's answer:
  attempt row, applied names changed, pending names cleared, lease released).

The claim (`claims.claim_due_servers`) is timed with 100,000 rows of delivered history and 1,000
servers without an agent (one waiting row each), against the same claim on an empty table.

Seeding is bulk INSERTs (not timed). Nothing here talks to an agent: bench/e2e.py measures the
whole path through real daemons.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from common import create_pg_database, drop_pg_database, machine, table, write_results
from seeding import ADMIN, store_issued, tenant
from sqlalchemy import insert, select, text, update

from app.certificates.models import Certificate
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.config import Settings
from app.context import AppContext
from app.db import new_id
from app.deployments.claims import claim_due_servers, release
from app.deployments.delivery import Outcome, _bundles, _plan, _record
from app.deployments.delta import delta_body
from app.deployments.desired import load_head
from app.deployments.models import AppliedName, Deployment
from app.domains.models import Binding, Domain
from app.domains.repository import DomainRepository
from app.domains.service import DomainService
from app.kit.time import utc_now
from app.migrate import upgrade
from app.servers.models import Server
from tests.support.pki import CA, write_pem

AGENT = "https://agent.bench.invalid"


def domain(i: int) -> str:
    return f"d{i:06d}.bench.test"


async def _bulk(session, model, rows: list[dict], size: int = 2000) -> None:
    for start in range(0, len(rows), size):
        await session.execute(insert(model), rows[start:start + size])


async def seed(ctx: AppContext, ca: CA, count: int) -> tuple[str, str, dict]:
    """One server with ``count`` domains, every name bound and applied; returns (server id,
    account id, one real certificate per rebind target)."""
    bench = await tenant(ctx, agent_url=AGENT, agent_tls_fingerprint="0" * 64)
    async with ctx.sessionmaker() as session:
        certs = CertificateService(CertificateRepository(session), ctx.master_key)
        middle = domain(count // 2)
        # Two real certificates for the name the benchmark rebinds, alternately.
        targets = {i: await store_issued(ctx, certs, ca, [f"webmail.{middle}", f"mail.{middle}"], bench.account_id,
                                         middle) for i in (0, 1)}
        template = targets[0]
        await session.commit()
        columns = {c.key: getattr(template, c.key) for c in Certificate.__table__.columns}
        server_id, account_id = bench.server_id, bench.account_id
        target_ids = {i: c.id for i, c in targets.items()}

    now = utc_now()
    cert_rows, domain_rows, binding_rows, applied_rows = [], [], [], []
    for i in range(count):
        cert_id, domain_id, fp = new_id(), new_id(), uuid.uuid4().hex * 2
        cert_rows.append({**columns, "id": cert_id, "fingerprint_sha256": fp, "name": domain(i)})
        domain_rows.append({"id": domain_id, "name": domain(i), "server_id": server_id, "account_id": account_id,
                            "created_at": now, "updated_at": now})
        for service in ("webmail", "mail"):
            binding_rows.append({"id": new_id(), "domain_id": domain_id, "service": service, "certificate_id": cert_id,
                                 "created_at": now, "updated_at": now})
            applied_rows.append({"server_id": server_id, "hostname": f"{service}.{domain(i)}", "service": service,
                                 "fingerprint": fp})
    async with ctx.sessionmaker() as session:
        for model, rows in ((Certificate, cert_rows), (Domain, domain_rows), (Binding, binding_rows),
                            (AppliedName, applied_rows)):
            await _bulk(session, model, rows)
        server = await session.get(Server, server_id)
        head = await load_head(session, server)
        await session.execute(update(Server).where(Server.id == server_id).values(
            applied_digest="a" * 64, applied_head=head, applied_generation=server.desired_generation))
        await session.execute(update(Deployment).where(Deployment.server_id == server_id).values(status="applied"))
        await session.commit()
    if ctx.engine.dialect.name == "postgresql":
        async with ctx.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
    return server_id, account_id, target_ids


async def one_change(ctx: AppContext, server_id: str, name: str, cert_id: str) -> dict[str, float]:
    """Bind ``name``'s mail to ``cert_id`` and run the controller's part of its delivery."""
    times = {}
    t0 = time.perf_counter()
    async with ctx.sessionmaker() as session:
        domains = DomainService(DomainRepository(session), CertificateService(CertificateRepository(session),
                                                                              ctx.master_key))
        await domains.bind(ADMIN, name, "mail", cert_id)
        await session.commit()
    times["bind"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    async with ctx.sessionmaker() as session:
        claimed = await claim_due_servers(session, "bench", utc_now(), timedelta(seconds=60), 16)
        assert claimed == [server_id], claimed
        server = await session.get(Server, server_id)
        row = await session.scalar(select(Deployment).where(Deployment.server_id == server_id,
                                                            Deployment.status.in_(("pending", "retrying"))))
        plan = await _plan(session, server, row.generation)
        await session.commit()
    body = delta_body(plan.generation, plan.base_digest, plan.head, plan.changes)
    bundles = await _bundles(ctx, plan.new_fingerprints)
    times["plan"] = time.perf_counter() - t0
    assert len(plan.changes) == 1 and len(bundles) <= 1, (plan.changes, list(bundles))
    assert body["mail_changes"]

    t0 = time.perf_counter()
    outcome = Outcome(True, response={"applied_digest": uuid.uuid4().hex * 2, "failed_names": []},
                      generation=plan.generation, head=plan.head, changes=plan.changes)
    await _record(ctx, server_id, row.id, "bench", utc_now(), outcome)
    times["record"] = time.perf_counter() - t0
    times["total"] = sum(times.values())
    return times


async def claim_cost(ctx: AppContext, history: int, agentless: int, repeat: int) -> tuple[float, str]:
    """Median ms of one claim round with ``history`` delivered rows and ``agentless`` waiting servers."""
    now = utc_now()
    async with ctx.sessionmaker() as session:
        template = await session.scalar(select(Server).limit(1))
        servers = [{"id": new_id(), "name": f"noagent-{i}", "hostname": f"noagent{i}.bench.test",
                    "software": "postfix-dovecot", "mail_certificate_id": template.mail_certificate_id,
                    "default_certificate_id": template.default_certificate_id, "desired_generation": 1,
                    "applied_generation": 0, "created_at": now, "updated_at": now} for i in range(agentless)]
        await _bulk(session, Server, servers)
        rows = [{"id": new_id(), "server_id": template.id, "generation": 1_000_000 + g, "reason": "history",
                 "status": "applied", "attempts": 1, "next_attempt_at": now, "applied_at": now, "changes": 1,
                 "created_at": now, "updated_at": now} for g in range(history)]
        rows += [{"id": new_id(), "server_id": s["id"], "generation": 1, "reason": "waiting", "status": "pending",
                  "attempts": 0, "next_attempt_at": None, "changes": 1, "created_at": now, "updated_at": now}
                 for s in servers]
        await _bulk(session, Deployment, rows)
        await session.commit()
    if ctx.engine.dialect.name == "postgresql":
        async with ctx.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
    samples = []
    for _ in range(repeat):
        async with ctx.sessionmaker() as session:
            t0 = time.perf_counter()
            claimed = await claim_due_servers(session, "bench", utc_now(), timedelta(seconds=60), 16)
            samples.append(time.perf_counter() - t0)
            for server_id in claimed:
                await release(session, server_id, "bench")
            await session.rollback()
    plan = await explain_claim(ctx)
    return statistics.median(samples) * 1000, plan


async def explain_claim(ctx: AppContext) -> str:
    from sqlalchemy.dialects import postgresql, sqlite

    from app.deployments.claims import candidates_query

    stmt = candidates_query(utc_now(), 16)
    dialect = postgresql.dialect() if ctx.engine.dialect.name == "postgresql" else sqlite.dialect()
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN " if ctx.engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(prefix + str(compiled)))).all()
    return " | ".join(str(r[-1]) for r in rows)


async def database(kind: str, tmp: Path) -> tuple[str, str | None]:
    if kind == "postgres":
        return await create_pg_database("certpost_bench")
    return f"sqlite+aiosqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}", None


async def run(kind: str, count: int, ca: CA, repeat: int, claim: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="certpost-bench-changes-"))
    url, dbname = await database(kind, tmp)
    try:
        await asyncio.to_thread(upgrade, url)
        settings = Settings(data_dir=tmp, database_url=url, run_worker=False,
                            trust_bundle=write_pem(tmp / "trust.pem", ca.cert_pem))
        ctx = AppContext.build(settings)
        started = time.perf_counter()
        server_id, _account, targets = await seed(ctx, ca, count)
        seeded = time.perf_counter() - started
        name = domain(count // 2)
        cert_ids = list(targets.values())
        await one_change(ctx, server_id, name, cert_ids[1])  # warm-up
        samples = [await one_change(ctx, server_id, name, cert_ids[i % 2]) for i in range(repeat)]
        result = {"db": kind, "domains": count, "seed_s": round(seeded, 1),
                  **{k: round(statistics.median(s[k] for s in samples) * 1000, 2)
                     for k in ("bind", "plan", "record", "total")}}
        if claim:
            empty_ms, _ = await claim_cost(ctx, 0, 0, repeat)
            full_ms, plan = await claim_cost(ctx, 100_000, 1_000, repeat)
            result.update(claim_empty_ms=round(empty_ms, 3), claim_history_ms=round(full_ms, 3), claim_plan=plan)
        await ctx.close()
        return result
    finally:
        await drop_pg_database(dbname)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default=None)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [1000, 10000] if args.quick else [1000, 10000, 100000])
    repeat = args.repeat or (5 if args.quick else 15)
    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    ca = CA.create("bench root").intermediate("bench issuing")
    results = []
    for kind in kinds:
        for count in sizes:
            result = await run(kind, count, ca, repeat, claim=count == sizes[-1])
            results.append(result)
            print(result, flush=True)
    headers = ["db", "domains", "bind ms", "plan ms", "record ms", "controller total ms"]
    print()
    print(table(headers, [[r["db"], r["domains"], r["bind"], r["plan"], r["record"], r["total"]] for r in results]))
    for r in results:
        if "claim_history_ms" in r:
            print(f"\nclaim ({r['db']}): empty {r['claim_empty_ms']} ms; 100,000 delivered + 1,000 agentless waiting "
                  f"{r['claim_history_ms']} ms; plan: {r['claim_plan']}")
    write_results("changes", {"machine": machine(), "results": results})


if __name__ == "__main__":
    asyncio.run(main())
