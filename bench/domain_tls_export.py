"""The server export of the domain TLS list in process: CPU time, bytes, a digest of the output, a profile.

    .venv/bin/python bench/domain_tls_export.py --db sqlite --count 10000 [--keep DIR] [--profile]
    .venv/bin/python MAIN/bench/domain_tls_export.py --keep DIR   # main's code on the same data

(MAIN: a tree of main, ``git archive main | tar -x -C MAIN``, with this script copied into its
bench/: bench/common.py puts the script's own checkout first on ``sys.path``.)

Seeds one server as bench/domain_tls.py does (``reads.prepare`` then ``domain_tls.vary``), or
reuses the database a previous ``--keep DIR`` run left (``DIR/url``), and runs
``tls_list.export`` directly (no HTTP), NDJSON and CSV, ``--rounds`` times each: wall and CPU
seconds of this process (on PostgreSQL the database's own work is in its process, not here),
and a SHA-256 of the bytes, so that two versions of the code can be compared row for row on
the same data (their digests must be equal). ``--profile`` prints cProfile's top functions (CPU time of the
event loop's thread, with the encoding run in it too) of one more run of each format. Where the served figures come from: bench/domain_tls.py.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import pstats
import sys
import time
from pathlib import Path

from common import drop_pg_database
from domain_tls import vary
from reads import prepare
from sqlalchemy import select

import app
from app.accounts.caller import Caller
from app.config import Settings
from app.context import AppContext
from app.domains import tls_list
from app.servers.models import Server


async def run(url: str, data_dir: Path, formats: list[str], rounds: int, profile: bool) -> None:
    ctx = AppContext.build(Settings(data_dir=data_dir, database_url=url, run_worker=False))
    try:
        async with ctx.sessionmaker() as session:
            server_id = await session.scalar(select(Server.id).limit(1))
        caller = Caller.for_worker("bench")
        await export(ctx, caller, server_id, formats[0])  # warm: imports, statement caches, connections
        for fmt in formats:
            for _ in range(rounds):
                wall, cpu = time.perf_counter(), time.process_time()
                size, digest, lines = await export(ctx, caller, server_id, fmt)
                print(f"{fmt}: wall {time.perf_counter() - wall:.3f} s, cpu {time.process_time() - cpu:.3f} s, "
                      f"{size} bytes, {lines} lines, sha256 {digest}", flush=True)
            if profile:  # CPU time of this thread, the encoding run in it (not in a worker thread)
                profiler = cProfile.Profile(time.thread_time)
                threaded = asyncio.to_thread

                async def inline(func, /, *args, **kwargs):
                    return func(*args, **kwargs)

                asyncio.to_thread = inline
                profiler.enable()
                await export(ctx, caller, server_id, fmt)
                profiler.disable()
                asyncio.to_thread = threaded
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
                print(out.getvalue()[:14000])
    finally:
        await ctx.close()


async def export(ctx: AppContext, caller: Caller, server_id: str, fmt: str) -> tuple[int, str, int]:
    digest, size, lines = hashlib.sha256(), 0, 0
    async for chunk in tls_list.export(ctx, caller, server_id, fmt):
        digest.update(chunk)
        size += len(chunk)
        lines += chunk.count(b"\n")
    return size, digest.hexdigest()[:16], lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="a directory to keep (or reuse) the seeded database in")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--formats", default="ndjson,csv")
    args = parser.parse_args()
    print(f"code: {Path(app.__file__).parent}", flush=True)
    work = args.keep or Path(__import__("tempfile").mkdtemp(prefix="certpost-export-"))
    work.mkdir(parents=True, exist_ok=True)
    drop = None
    if (work / "url").exists():
        url = (work / "url").read_text().strip()
    else:
        seeded, _env = asyncio.run(prepare(args.db, args.count, work))
        url, drop = seeded["url"], seeded["drop"]
        asyncio.run(vary(url, work, args.count))
        if args.keep:
            (work / "url").write_text(url)
            drop = None
    try:
        asyncio.run(run(url, work / "data", args.formats.split(","), args.rounds, args.profile))
    finally:
        if drop:
            asyncio.run(drop_pg_database(drop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
