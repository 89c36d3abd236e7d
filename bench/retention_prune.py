"""Retention: pruning a backlog of old events, and what a writer waits meanwhile.

    .venv/bin/python bench/retention_prune.py [--rows 100000] [--backends sqlite,postgres]

Each backend gets a fresh database built by the real migrations, filled by bulk INSERT with
``--rows`` events that occurred 100 days ago (two subject rows each, as a binding event has)
and a fifth as many from today. Timed: ``app.retention.jobs.prune`` with the default settings
(90 days) through the application's own engine, every batch its own transaction. Meanwhile a
writer inserts one event (with its subject row) every 20 ms in its own transaction, as the API
does: its longest wait says whether pruning holds a lock for long (SQLite has one writer at a
time; PostgreSQL locks only the rows deleted). Anchor: the same writer for 5 s before pruning
starts, on the same database (``idle_write_*``). Results in bench/results/retention_prune.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, create_pg_database, drop_pg_database, median, table, write_results

sys.path.insert(0, str(REPO))

from sqlalchemy import func, insert, select

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.events.models import Event, EventSubject
from app.kit.time import utc_now
from app.migrate import upgrade
from app.retention import jobs
from app.retention.rules import retention

CHUNK = 5000


def event_row(i: int, at) -> dict:
    return {"id": i, "kind": "binding.set", "occurred_at": at, "actor_type": "token", "actor_id": "t" * 12,
            "actor_role": "customer", "account_id": "a" * 36, "subjects": {"domain": f"d{i}.test"},
            "data": {"service": "mail", "hostname": f"mail.d{i}.test"}}


async def fill(sessionmaker, old: int, recent: int) -> None:
    now = utc_now()
    for start in range(1, old + recent + 1, CHUNK):
        ids = range(start, min(start + CHUNK, old + recent + 1))
        async with sessionmaker() as session:
            await session.execute(insert(Event), [
                event_row(i, now - timedelta(days=100) if i <= old else now) for i in ids])
            await session.execute(insert(EventSubject), [
                {"subject_id": s, "event_id": i} for i in ids for s in (f"d{i}.test", f"cert-{i % 97}")])
            await session.commit()


async def writer(sessionmaker, stop: asyncio.Event, waits: list[float], first_id: int) -> None:
    i = first_id
    while not stop.is_set():
        started = time.perf_counter()
        async with sessionmaker() as session:
            session.add(Event(**event_row(i, utc_now())))
            await session.flush()
            session.add(EventSubject(subject_id=f"d{i}.test", event_id=i))
            await session.commit()
        waits.append(time.perf_counter() - started)
        i += 1
        await asyncio.sleep(0.02)


async def run(backend: str, rows: int, tmp: Path) -> dict:
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'retention.db'}"
    else:
        url, name = await create_pg_database("certpost_bench_retention")
    try:
        await asyncio.to_thread(upgrade, url)
        settings = Settings(database_url=url, data_dir=tmp)
        engine = create_engine(settings)
        ctx = SimpleNamespace(sessionmaker=create_sessionmaker(engine), settings=settings)
        await fill(ctx.sessionmaker, rows, rows // 5)
        batches: list[float] = []
        prune_events = jobs.RetentionRepository.prune_events

        async def timed_batch(self, before, limit):
            started = time.perf_counter()
            try:
                return await prune_events(self, before, limit)
            finally:
                batches.append(time.perf_counter() - started)

        # Anchor: the same writer for 5 s with no pruning, on the same database and machine.
        stop, idle = asyncio.Event(), []
        background = asyncio.create_task(writer(ctx.sessionmaker, stop, idle, rows * 3))
        await asyncio.sleep(5)
        stop.set()
        await background
        jobs.RetentionRepository.prune_events = timed_batch
        stop, waits = asyncio.Event(), []
        background = asyncio.create_task(writer(ctx.sessionmaker, stop, waits, rows * 2))
        started = time.perf_counter()
        pruned = await jobs.prune(ctx, retention(settings, utc_now()))
        seconds = time.perf_counter() - started
        stop.set()
        await background
        jobs.RetentionRepository.prune_events = prune_events
        async with ctx.sessionmaker() as session:
            left = await session.scalar(select(func.count()).select_from(Event))
        await engine.dispose()
        return {"backend": backend, "old_events": rows, "pruned": pruned["events"], "left": left,
                "seconds": round(seconds, 2), "events_per_second": round(pruned["events"] / seconds),
                "batches": len(batches), "batch_median_ms": round(median(batches) * 1000, 1),
                "batch_max_ms": round(max(batches) * 1000, 1), "writes_during": len(waits),
                "write_median_ms": round(median(waits) * 1000, 1), "write_max_ms": round(max(waits) * 1000, 1),
                "idle_write_median_ms": round(median(idle) * 1000, 1),
                "idle_write_max_ms": round(max(idle) * 1000, 1)}
    finally:
        if backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                (tmp / f"retention.db{suffix}").unlink(missing_ok=True)
        else:
            await drop_pg_database(name)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true", help="10,000 rows, SQLite")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.backends = 10_000, "sqlite"
    tmp = Path(__file__).resolve().parent / "results" / "tmp-retention"
    tmp.mkdir(parents=True, exist_ok=True)
    results = [await run(b, args.rows, tmp) for b in args.backends.split(",")]
    tmp.rmdir()
    headers = list(results[0])
    print(table(headers, [[r[h] for h in headers] for r in results]))
    print(write_results("retention_prune", {"rows": args.rows, "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
