"""The renewal scan: the query ``schedule_due_renewals`` runs, at 100,000 ACME certificates,
for each way their renewal state can be spread, on SQLite and PostgreSQL.

    .venv/bin/python bench/renewal_scan.py [--quick] [--rows 100000] [--runs 20] [--backends sqlite,postgres]

Each backend gets a fresh database built by the real migrations; the certificates table is
filled by bulk INSERT (one executemany) for each distribution; PostgreSQL is ANALYZEd (SQLite
too: ``ANALYZE`` feeds its planner the same way). Timed: ``app.acme.renewal.due_query(now, 50)``
through the application's own engine and session, median of ``--runs``, with the plan the
database chose (EXPLAIN QUERY PLAN / EXPLAIN) saved to bench/results/renewal_scan.json.

Anchor, in the same run and database: the query as it was before ``renewal_eligible_at``
(conditions on ``renewal_at``, ``renewal_status`` and ``next_renewal_attempt_at`` with an index
on ``renewal_at``, created for the measurement), so the ratio is old/new on the same rows.

Distributions (``now`` is when the rows are written; the scan runs seconds later):
- spread: renewal_at uniform over [now-1 d, now+89 d], scheduled (about 1 % due);
- none_due: renewal_at in [now+1 d, now+60 d];
- all_due_eligible: renewal_at in [now-7 d, now-1 min], scheduled, no backoff;
- all_due_backing_off: renewal_at past, failed, next attempt in [now+1 min, now+6 h] (after a DNS outage);
- half_failed_permanently: half spread, half past due and failing at the retry cap (next attempt
  in [now+12 h, now+24 h], 20 attempts): certpost never gives up, so "permanent" is the cap;
- all_renewing: renewal_at past, a renewal running on every one.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, median, table, write_results

sys.path.insert(0, str(REPO))

from sqlalchemy import or_, select, text

from app.acme.renewal import due_query
from app.certificates.models import Certificate
from app.config import Settings
from app.db import create_engine, create_sessionmaker, query_plan
from app.kit.renewal import renewal_eligible_at
from app.kit.time import utc_now
from app.migrate import upgrade

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
LIMIT = 50
DISTRIBUTIONS = ("spread", "none_due", "all_due_eligible", "all_due_backing_off",
                 "half_failed_permanently", "all_renewing")


def renewal_state(kind: str, i: int, now, rng: random.Random) -> tuple:
    """(renewal_at, renewal_status, next_renewal_attempt_at, renewal_attempts) of row i."""
    def minutes(lo, hi):
        return now + timedelta(minutes=rng.uniform(lo, hi))

    day = 24 * 60
    if kind == "half_failed_permanently":
        kind = "spread" if i % 2 else "failed_at_cap"
    if kind == "spread":
        return minutes(-day, 89 * day), "scheduled", None, 0
    if kind == "none_due":
        return minutes(day, 60 * day), "scheduled", None, 0
    if kind == "all_due_eligible":
        return minutes(-7 * day, -1), "scheduled", None, 0
    if kind == "all_due_backing_off":
        return minutes(-7 * day, -1), "failed", minutes(1, 6 * 60), 3
    if kind == "failed_at_cap":
        return minutes(-30 * day, -day), "failed", minutes(12 * 60, day), 20
    if kind == "all_renewing":
        return minutes(-7 * day, -1), "renewing", None, 0
    raise ValueError(kind)


def rows_for(kind: str, n: int) -> list[dict]:
    rng = random.Random(8)
    now = utc_now()
    rows = []
    for i in range(n):
        renewal_at, status, next_at, attempts = renewal_state(kind, i, now, rng)
        rows.append({
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "created_at": now, "updated_at": now,
            "account_id": None, "name": f"ACME c{i}.test", "source": "acme", "subject": f"CN=c{i}.test",
            "issuer": "CN=Pebble Intermediate", "serial": f"{i:032x}", "sans": [f"c{i}.test"],
            "not_before": now - timedelta(days=60), "not_after": now + timedelta(days=30),
            "fingerprint_sha256": f"{i:064x}", "key_type": "ec", "key_bits": 256, "self_signed": False,
            "trusted": True, "chain_length": 1, "certificate_pem": "-", "chain_pem": "", "key_ciphertext": b"-",
            "key_wrapped": b"-", "master_key_id": "bench", "revision": 1, "order_id": None,
            "renewal_at": renewal_at, "renewal_status": status, "renewal_error": None,
            "renewal_attempts": attempts, "next_renewal_attempt_at": next_at,
            "renewal_eligible_at": renewal_eligible_at("acme", renewal_at, status, next_at),
        })
    return rows


def old_query(now, limit: int):
    """The scan before renewal_eligible_at (the anchor)."""
    c = Certificate
    return select(c.id).where(
        (c.source == "acme") & c.renewal_at.is_not(None) & (c.renewal_at <= now)
        & or_(c.renewal_status.is_(None), c.renewal_status != "renewing")
        & or_(c.next_renewal_attempt_at.is_(None), c.next_renewal_attempt_at <= now)
    ).limit(limit)


async def fresh_database(backend: str, tmp: Path) -> tuple[str, callable]:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'renewal_scan.db'}"

        async def remove():
            for suffix in ("", "-wal", "-shm"):
                (tmp / f"renewal_scan.db{suffix}").unlink(missing_ok=True)

        return url, remove
    import asyncpg

    name = f"certpost_bench_scan_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop():
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", drop


async def timed(sessionmaker, stmt, runs: int) -> tuple[float, int]:
    times, found = [], 0
    async with sessionmaker() as session:
        await session.execute(stmt)  # warm: connection, statement cache, pages
        for _ in range(runs):
            started = time.perf_counter()
            found = len((await session.execute(stmt)).all())
            times.append((time.perf_counter() - started) * 1000)
    return median(times), found


async def measure(backend: str, tmp: Path, n: int, runs: int, kinds: tuple[str, ...]) -> list[dict]:
    url, drop = await fresh_database(backend, tmp)
    out = []
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(Settings(database_url=url, data_dir=tmp))
        sessionmaker = create_sessionmaker(engine)
        async with engine.begin() as conn:  # the anchor's index (dropped by migration 0007)
            await conn.execute(text("CREATE INDEX bench_ix_renewal_at ON certificates (renewal_at)"))
        for kind in kinds:
            rows = rows_for(kind, n)
            started = time.perf_counter()
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM certificates"))
                await conn.execute(Certificate.__table__.insert(), rows)
            seed_s = time.perf_counter() - started
            async with engine.connect() as conn:
                if backend == "postgres":
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.execute(text("VACUUM ANALYZE certificates"))
                else:
                    await conn.execute(text("ANALYZE"))
                    await conn.commit()
            now = utc_now()
            new_ms, new_found = await timed(sessionmaker, due_query(now, LIMIT), runs)
            old_ms, old_found = await timed(sessionmaker, old_query(now, LIMIT), runs)
            async with sessionmaker() as session:
                new_plan = await query_plan(session, due_query(now, LIMIT))
                old_plan = await query_plan(session, old_query(now, LIMIT))
            row = {"backend": backend, "distribution": kind, "rows": n, "seed_s": round(seed_s, 1),
                   "scan_ms": round(new_ms, 3), "found": new_found, "anchor_ms": round(old_ms, 3),
                   "anchor_found": old_found, "ratio_anchor_over_new": round(old_ms / new_ms, 1) if new_ms else None,
                   "plan": new_plan, "anchor_plan": old_plan}
            print(f"{backend:8} {kind:24} scan {new_ms:8.3f} ms ({new_found:2} due)  anchor {old_ms:8.3f} ms"
                  f"  plan: {' / '.join(p.strip() for p in new_plan)[:110]}", flush=True)
            out.append(row)
        await engine.dispose()
    finally:
        await drop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 5 runs")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--distributions", default=",".join(DISTRIBUTIONS))
    args = parser.parse_args()
    n, runs = (10_000, 5) if args.quick else (args.rows, args.runs)
    kinds = tuple(args.distributions.split(","))
    import os
    import tempfile

    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="renewal-scan-") as tmp:
        for backend in args.backends.split(","):
            results += asyncio.run(measure(backend, Path(tmp), n, runs, kinds))
    print()
    print(table(["backend", "distribution", "scan ms (median)", "due found", "anchor ms (old query)", "anchor/new"],
                [[r["backend"], r["distribution"], r["scan_ms"], r["found"], r["anchor_ms"], r["ratio_anchor_over_new"]]
                 for r in results]))
    worst = max(r["scan_ms"] for r in results)
    print(f"\nworst scan: {worst:.3f} ms (goal <= 50 ms); load average before/after {load} / {os.getloadavg()}")
    path = write_results("renewal_scan", {"rows": n, "runs": runs, "limit": LIMIT, "goal_ms": 50,
                                          "worst_scan_ms": worst, "loadavg_before": load,
                                          "loadavg_after": os.getloadavg(), "results": results})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
