"""The TLS status of many domains (`GET /v1/domain-tls`) and a server's export, from outside.

    .venv/bin/python bench/domain_tls.py [--quick] [--sizes 10000,100000] [--db sqlite|postgres|both]

One server holding N domains seeded as bench/reads.py seeds them (each domain its own
certificate bound to webmail and mail, the server deployed), then varied so that filters have
something to find: every certificate trusted and expiring on a different day within two years,
except 1% self-signed (``i % 100 == 0``), 0.5% expired (``i % 200 == 1``) and 1% whose mail is
left to the server default (``i % 100 == 2``: ``hostname_not_covered``): 2.5% of the domains warn.

`certpost serve` as users run it; wrk with ONE connection (so the latency is the service time
of one request, not a queue) runs each route for a few seconds, a random path per request from
a list: a page of 100 from a random cursor of `GET /v1/domains` (the baseline) and of
`GET /v1/domain-tls`, first pages with `count=true`, `sort=not_after` and `-not_after`, pages
of `sort=not_after` and `-name` from a random cursor, `warning=true` (with and without
`count=true`) and `false`, each reason (`certificate_not_yet_valid` matches no domain), and a
`q` substring and a `prefix` from random names; and the panel's other screens: a random
domain's TLS status (its dialog), the certificate picker for it (`usable_for`, both services)
and the server (its settings). Then the NDJSON and CSV exports, each three times (wall time to the last byte, and
the server's CPU time and VmHWM before and after; once at 100,000). Results in bench/results/domain_tls.json.

``BENCH_NO_EXPORT=1`` leaves the exports out (the pages only). ``--against PATH`` measures a second `certpost` (e.g. main's: ``--against /work/main/.venv/bin/certpost``)
on the same seeded database right before this checkout's, one server at a time: a before/after
in one run, under the same load; ``--rounds N`` measures the two in turn N times (against,
this, against, this, ...), ``--exports-only`` skips the wrk routes and ``--routes dialog,picker``
runs only the routes whose name has one of the words (and the baseline). Each export's body is
digested (``sha256``): two versions of the code must send the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
from common import drop_pg_database, machine, process_memory, table, write_results
from reads import CERTPOST, domain_cursor, domain_name, prepare, start, stop
from sqlalchemy import bindparam, select, update

from app.certificates.models import Certificate
from app.config import Settings
from app.context import AppContext
from app.domains import tls_upkeep
from app.domains.models import Binding, Domain
from app.domains.tls_list import encode_cursor
from app.kit.time import utc_now
from tests.support.ports import free_port

BATCH = 5000
PAGES = 300  # random paths per route

LUA = """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + id)
end
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
request = function()
  return wrk.format("GET", paths[math.random(1, #paths)])
end
"""


async def vary(url: str, work: Path, count: int) -> list:
    """Make 2.5% of the domains warn and spread the expiry dates (module docstring); returns
    the expiry sort's keys (the earlier notAfter, the name) of random domains, for cursors."""
    ctx = AppContext.build(Settings(data_dir=work / "data", database_url=url, run_worker=False))
    now = utc_now().replace(microsecond=0)
    try:
        async with ctx.engine.begin() as conn:
            rows = (await conn.execute(select(Certificate.id, Certificate.name).where(Certificate.name.like("%.bench.test")))).all()
            changes = []
            for cert_id, name in rows:
                i = int(name[1:7])
                expiry = now - timedelta(days=1) if i % 200 == 1 else now + timedelta(days=40 + (i * 7919) % 700)
                changes.append({"cid": cert_id, "na": expiry, "ss": i % 100 == 0, "tr": i % 100 != 0})
            # Judged against the server's own trust store (its identity), so `certpost serve`
            # does not judge them again at start-up (trust.refresh_stored): the seed's material
            # is one real certificate whose names are not the row's, which the chain check
            # calls untrusted, and every domain would warn.
            stmt = (update(Certificate.__table__).where(Certificate.id == bindparam("cid"))
                    .values(not_after=bindparam("na"), self_signed=bindparam("ss"), trusted=bindparam("tr"),
                            trust_store=ctx.trust.identity, trust_reason=None, trust_detail=None))
            for start_at in range(0, len(changes), BATCH):
                await conn.execute(stmt, changes[start_at:start_at + BATCH])
            defaulted = [domain_name(i) for i in range(2, count, 100)]
            ids = select(Domain.id).where(Domain.name.in_(defaulted)).scalar_subquery()
            await conn.execute(Binding.__table__.delete().where(Binding.service == "mail", Binding.domain_id.in_(ids)))
        # Seeded and varied around the application: each domain's TLS summary is brought up to
        # date once, as the writes of the API keep it (app/domains/tls_upkeep.py).
        async with ctx.sessionmaker() as session:
            await tls_upkeep.everything(session)
            await session.commit()
        async with ctx.engine.connect() as conn:
            picks = [domain_name(i) for i in random.Random(11).sample(range(count), min(count, PAGES))]
            keys = list(await conn.execute(select(Domain.tls_soonest, Domain.name).where(Domain.name.in_(picks))))
        if ctx.engine.dialect.name == "postgresql":
            async with ctx.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("ANALYZE")
    finally:
        await ctx.close()
    return [(soonest, name) for soonest, name in keys]


def routes(server_id: str, count: int, rng: random.Random, expiry_keys: list) -> dict[str, list[str]]:
    base = f"/v1/domain-tls?server_id={server_id}&limit=100"
    picks = [rng.randrange(count) for _ in range(PAGES)]
    names = [domain_name(i) for i in picks]
    # Opaque cursors (every list's envelope) and no cache-busting parameter: unknown query
    # parameters are refused (422), and nothing caches a GET without If-None-Match.
    return {
        "domains page": [f"/v1/domains?server_id={server_id}&limit=100&cursor={domain_cursor(i)}" for i in picks],
        "domain-tls page": [f"{base}&cursor={encode_cursor('name', (n,))}" for n in names],
        "first page, count=true": [f"{base}&count=true"],
        "sort=not_after": [f"{base}&sort=not_after"],
        "sort=-not_after": [f"{base}&sort=-not_after"],
        "sort=not_after, random cursor": [
            f"{base}&sort=not_after&cursor={encode_cursor('not_after', (soonest, n))}"
            for soonest, n in expiry_keys],
        "sort=-name, random cursor": [f"{base}&sort=-name&cursor={encode_cursor('-name', (n,))}" for n in names],
        "warning=true": [f"{base}&warning=true"],
        "warning=true, count=true": [f"{base}&warning=true&count=true"],
        "warning=false": [f"{base}&warning=false"],
        "reason (no match)": [f"{base}&reason=certificate_not_yet_valid"],
        **{f"reason={r}": [f"{base}&reason={r}"]
           for r in ("certificate_expired", "self_signed", "certificate_untrusted", "hostname_not_covered")},
        "q substring": [f"{base}&q={n[:5]}" for n in names],
        "prefix": [f"{base}&prefix={n[:5]}" for n in names],
        # The panel's other screens (issue 9: each in one or two calls): a domain's dialog, the
        # certificate picker for it, the server's settings.
        "domain dialog: one domain's TLS": [f"/v1/domains/{n}/tls" for n in names],
        "picker: usable_for, both": [f"/v1/certificates?usable_for={n}&service=both" for n in names],
        "server settings": [f"/v1/servers/{server_id}"],
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk1(port: int, paths: list[str], token: str, seconds: int, work: Path, pid: int) -> dict:
    """One connection, one thread: each request waits for the previous (the service time)."""
    (work / "paths.txt").write_text("\n".join(paths) + "\n")
    (work / "list.lua").write_text(LUA)
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_PATHS": str(work / "paths.txt")}
    before = cpu_seconds(pid)
    r = subprocess.run(["wrk", "-t1", "-c1", f"-d{seconds}s", "--timeout", "60s", "--latency", "-s", str(work / "list.lua"),
                        f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True, check=False)
    if r.returncode:
        raise RuntimeError(f"wrk failed: {r.stdout[-800:]} {r.stderr[-800:]}")
    import re

    out = r.stdout
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def pct(p):
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        return round(float(value) * units[unit], 2)

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "requests": requests,
            "cpu_ms_per_request": round((cpu_seconds(pid) - before) * 1000 / max(requests, 1), 2),
            "non_2xx": int(errors.group(1)) if errors else 0}


def export(port: int, server_id: str, token: str, fmt: str, pid: int, runs: int) -> dict:
    walls = []
    before = process_memory(pid)
    cpu = cpu_seconds(pid)
    for _ in range(runs):
        started = time.perf_counter()
        size, lines, digest = download(port, server_id, token, fmt)
        walls.append(time.perf_counter() - started)
    return {"wall_s": round(statistics.median(walls), 3), "walls": [round(w, 3) for w in walls], "bytes": size,
            "server_cpu_s": round((cpu_seconds(pid) - cpu) / runs, 3),
            "lines": lines, "sha256": digest, "memory_before_mb": before, "memory_after_mb": process_memory(pid),
            "healthz_during_export_ms": healthz_during(port, server_id, token, fmt)}


def download(port: int, server_id: str, token: str, fmt: str) -> tuple[int, int, str]:
    size = lines = 0
    digest = hashlib.sha256()
    with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/servers/{server_id}/domain-tls.{fmt}",
                      headers={"Authorization": f"Bearer {token}"}, timeout=300) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
            digest.update(chunk)
    return size, lines, digest.hexdigest()[:16]


def healthz_during(port: int, server_id: str, token: str, fmt: str) -> dict:
    """One more export (not in the timings above) with ``GET /healthz`` sent every 20 ms
    meanwhile from another connection: whether the event loop answers during an export."""
    done = threading.Event()

    def run():
        try:
            download(port, server_id, token, fmt)
        finally:
            done.set()

    worker = threading.Thread(target=run)
    worker.start()
    seen = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        while not done.is_set():
            started = time.perf_counter()
            client.get("/healthz").raise_for_status()
            seen.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
    worker.join()
    seen.sort()
    return {"probes": len(seen), "p50": round(seen[len(seen) // 2], 1) if seen else None,
            "max": round(seen[-1], 1) if seen else None}


def measure(db: str, count: int, seconds: int, binaries: list[tuple[str, str]], exports_only: bool,
            only: list[str] | None = None) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="certpost-domain-tls-") as tmp:
        work = Path(tmp)
        seeded, env = asyncio.run(prepare(db, count, work))
        try:
            expiry_keys = asyncio.run(vary(seeded["url"], work, count))
            return [serve_and_measure(db, count, seconds, label, binary, work, seeded, env, expiry_keys, exports_only,
                                      only)
                    for label, binary in binaries]
        finally:
            asyncio.run(drop_pg_database(seeded["drop"]))



def serve_and_measure(db, count, seconds, label, binary, work, seeded, env, expiry_keys, exports_only=False,
                      only=None) -> dict:
    print(f"   {label}: {binary} (load {os.getloadavg()[0]:.1f})", flush=True)
    port = free_port()
    proc = start([binary, "serve", "--port", str(port)], env, port, timeout=300)
    try:
        token, server_id = seeded["token"], seeded["server_id"]
        out = {"db": db, "domains": count, "certpost": label, "binary": binary, "routes": {}, "exports": {},
               "load_before": os.getloadavg()}
        chosen = {} if exports_only else routes(server_id, count, random.Random(9), expiry_keys)
        if only:
            chosen = {r: p for r, p in chosen.items() if r == "domains page" or any(o in r for o in only)}
        for route, paths in chosen.items():
            out["routes"][route] = wrk1(port, paths, token, seconds, work, proc.pid)
            print(f"   {route}: {out['routes'][route]}", flush=True)
        for fmt in () if os.environ.get("BENCH_NO_EXPORT") else ("ndjson", "csv"):
            out["exports"][fmt] = export(port, server_id, token, fmt, proc.pid, 3 if count <= 10000 else 1)
            print(f"   export {fmt}: {out['exports'][fmt]}", flush=True)
        out["load_after"] = os.getloadavg()
        return out
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 domains, SQLite, short runs")
    parser.add_argument("--sizes", default=None, help="comma-separated domain counts (default 10000,100000)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default=None)
    parser.add_argument("--seconds", type=int, default=None, help="per wrk run (default 3)")
    parser.add_argument("--against", default=None, help="another certpost executable, measured first (before/after)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --against: measure the two in turn this many times (against, this, against, ...)")
    parser.add_argument("--exports-only", action="store_true", help="skip the wrk routes, measure the exports")
    parser.add_argument("--routes", default=None,
                        help="comma-separated substrings: only the routes whose name has one (the domain list's "
                             "page, the baseline, always runs)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("10000" if args.quick else "10000,100000")).split(",")]
    dbs = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}[
        args.db or ("sqlite" if args.quick else "both")]
    seconds = args.seconds or (2 if args.quick else 3)
    load_before = os.getloadavg()
    binaries = (([("against", args.against)] if args.against else []) + [("this", CERTPOST)]) * args.rounds
    measured = []
    for db in dbs:
        for count in sizes:
            print(f"-- {db}, {count:,} domains (load {os.getloadavg()[0]:.1f})", flush=True)
            measured += measure(db, count, seconds, binaries, args.exports_only,
                                args.routes.split(",") if args.routes else None)
    rows = []
    for m in measured:
        if not m["routes"]:
            continue
        baseline = m["routes"]["domains page"]
        for route, r in m["routes"].items():
            rows.append([m["db"], f"{m['domains']:,}", m["certpost"], route, r["p50_ms"], r["p90_ms"], r["p99_ms"],
                         r["cpu_ms_per_request"], round(r["p50_ms"] / baseline["p50_ms"], 2),
                         round(r["cpu_ms_per_request"] / baseline["cpu_ms_per_request"], 2), r["non_2xx"]])
    print(table(["db", "domains", "certpost", "route (100 rows)", "p50 ms", "p90 ms", "p99 ms", "CPU ms/req",
                 "p50 / domains page", "CPU / domains page", "non-2xx"], rows))
    rows = [[m["db"], f"{m['domains']:,}", m["certpost"], fmt, e["wall_s"], e["server_cpu_s"], e["bytes"], e["sha256"],
             e["memory_before_mb"].get("VmHWM"), e["memory_after_mb"].get("VmHWM"),
             f"{e['healthz_during_export_ms']['p50']} / {e['healthz_during_export_ms']['max']}",
             f"{m['load_before'][0]:.1f} / {m['load_after'][0]:.1f}"]
            for m in measured for fmt, e in m["exports"].items()]
    print(table(["db", "domains", "certpost", "export", "wall s (median)", "certpost CPU s", "bytes", "sha256",
                 "VmHWM before MB", "VmHWM after MB", "/healthz during (p50 / max ms)", "load 1 min before / after"], rows))
    print(f"load average before {load_before}, after {os.getloadavg()}")
    path = write_results("domain_tls", {"machine": machine(), "load_before": load_before,
                                        "load_after": os.getloadavg(), "seconds": seconds, "measured": measured})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
