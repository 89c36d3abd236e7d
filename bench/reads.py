"""API reads at scale, from outside, with wrk: one server holding N domains (each with its own
certificate bound to webmail and mail), the server deployed, `certpost serve` started as users
start it, and a bare FastAPI anchor returning JSON of the same size run alternately with it.

    .venv/bin/python bench/reads.py [--quick] [--sizes 1000,10000,100000] [--db sqlite|postgres|both]

Measured per database and size: `GET /v1/domains/{d}/tls` (a random domain per request), the
domain list (`?server_id=`, limit 100, from the opaque cursor after a random domain) and the certificate list (first
page, limit 100): wrk, 16 connections, 2 threads, alternating anchor / certpost runs. Records
req/s, p50, p99, the ratio to the anchor, and certpost's VmHWM/VmRSS after the runs.
Seeding runs the real migrations, then bulk INSERTs (SQLAlchemy core, big executemany batches):
one real certificate's material reused for every row with distinct ids, names and fingerprints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import (
    BENCH,
    REPO,
    create_pg_database,
    drop_pg_database,
    machine,
    process_memory,
    table,
    write_results,
)
from seeding import tenant
from sqlalchemy import insert, select, text

from app.accounts.caller import OPERATOR
from app.certificates import material
from app.certificates.models import Certificate, CertificateName
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.config import Settings
from app.context import AppContext
from app.db import new_id
from app.deployments import applied
from app.deployments.desired import load_desired, load_head
from app.deployments.models import Deployment
from app.domains import tls_upkeep
from app.domains.models import Binding, Domain
from app.domains.repository import DOMAIN_ORDER
from app.kit.digest import config_digest
from app.kit.time import utc_now
from app.migrate import upgrade
from app.servers.models import Server
from tests.support.ports import free_port

BATCH = 5000
CONNECTIONS = 16
THREADS = 2
# CERTPOST_BENCH_CERTPOST: another `certpost` to measure (e.g. a checkout of main), for a before/after
# in the same conditions; the seeding always uses this checkout's code.
CERTPOST = os.environ.get("CERTPOST_BENCH_CERTPOST") or str(REPO / ".venv" / "bin" / "certpost")

LUA = """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + id)
end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local n = tonumber(os.getenv("BENCH_N"))
local pattern = os.getenv("BENCH_PATH")
-- List cursors are opaque: the ones to start from are written by the benchmark, one a line.
local cursors = nil
local cursor_file = os.getenv("BENCH_CURSORS")
if cursor_file and cursor_file ~= "" then
  cursors = {}
  for line in io.lines(cursor_file) do cursors[#cursors + 1] = line end
end
request = function()
  if cursors then
    return wrk.format("GET", string.format(pattern, cursors[math.random(1, #cursors)]))
  end
  return wrk.format("GET", string.format(pattern, math.random(0, n - 1)))
end
"""


def domain_name(i: int) -> str:
    return f"d{i:06d}.bench.test"


# -- seeding --------------------------------------------------------------------------------

async def _template(ctx: AppContext, session) -> dict:
    """One real certificate row (material, sealed key) to clone: the reads never unseal it."""
    certs = CertificateService(CertificateRepository(session), ctx.master_key)
    cert = await certs.store(material.self_signed([f"webmail.{domain_name(0)}", f"mail.{domain_name(0)}"]),
                             account_id=None, name="template", source="upload", caller=OPERATOR)
    await session.flush()
    row = (await session.execute(select(Certificate.__table__).where(Certificate.id == cert.id))).mappings().one()
    await session.execute(Certificate.__table__.delete().where(Certificate.id == cert.id))
    return dict(row)


async def seed_applied(session, server_id: str) -> None:
    """The server as after a full deploy, stored the way the delivery stores it
    (deployments/delivery.py ``_record_applied``): its generation applied, its waiting
    deployment ``applied``, the document's names as ``applied_names`` rows, its digest and
    scalars on the server row. Adapt here when that storage changes."""
    server = await session.get(Server, server_id)
    desired = await load_desired(session, server)
    desired.generation = server.desired_generation
    document = desired.document()
    await applied.record_document(session, server_id, document)
    await applied.clear_pending(session, server_id, server.desired_generation)
    server.applied_generation = server.desired_generation
    server.applied_digest = config_digest(document)
    server.applied_head = await load_head(session, server)
    now = utc_now()
    await session.execute(Deployment.__table__.update()
                          .where(Deployment.server_id == server_id, Deployment.status.in_(("pending", "retrying")))
                          .values(status="applied", applied_at=now, attempts=1,
                                  generation=server.desired_generation))
    await session.flush()


async def seed(ctx: AppContext, count: int) -> dict:
    bench = await tenant(ctx, agent_url="https://127.0.0.1:9/", agent_tls_fingerprint="ab" * 32)
    async with ctx.sessionmaker() as session:
        template = await _template(ctx, session)
        await session.commit()
    started = time.perf_counter()
    now = utc_now()
    for start in range(0, count, BATCH):
        certificates, names, domains, bindings = [], [], [], []
        for i in range(start, min(count, start + BATCH)):
            name = domain_name(i)
            cert_id, domain_id = new_id(), new_id()
            sans = [f"webmail.{name}", f"mail.{name}"]
            certificates.append({**template, "id": cert_id, "account_id": bench.account_id, "name": name, "sans": sans,
                                 "fingerprint_sha256": secrets.token_hex(32), "serial": secrets.token_hex(8),
                                 "created_at": now, "updated_at": now})
            names += [{"certificate_id": cert_id, "name": n} for n in sans]
            domains.append({"id": domain_id, "name": name, "server_id": bench.server_id, "account_id": bench.account_id,
                            "created_at": now, "updated_at": now})
            bindings += [{"id": new_id(), "domain_id": domain_id, "service": s, "certificate_id": cert_id,
                          "created_at": now, "updated_at": now} for s in ("webmail", "mail")]
        async with ctx.engine.begin() as conn:
            await conn.execute(insert(Certificate.__table__), certificates)
            await conn.execute(insert(CertificateName.__table__), names)
            await conn.execute(insert(Domain.__table__), domains)
            await conn.execute(insert(Binding.__table__), bindings)
    async with ctx.sessionmaker() as session:
        await session.execute(
            Server.__table__.update().where(Server.id == bench.server_id).values(mail_certificate_count=count))
        await seed_applied(session, bench.server_id)
        # seeded around the application: each domain's TLS summary written once, as the API's
        # writes keep it (app/domains/tls_upkeep.py)
        await tls_upkeep.everything(session)
        await session.commit()
    inserted = time.perf_counter() - started
    if ctx.engine.dialect.name == "postgresql":
        async with ctx.engine.begin() as conn:  # what autovacuum does soon after a bulk load
            await conn.execute(text("ANALYZE"))
    return {"token": bench.token, "server_id": bench.server_id, "seed_seconds": round(time.perf_counter() - started, 1),
            "insert_seconds": round(inserted, 1)}


# -- processes ------------------------------------------------------------------------------

def start(argv: list[str], env: dict, port: int, timeout: float = 60) -> subprocess.Popen:
    """Start a server and wait for /healthz. Its stderr (certpost's access log: a JSON line per
    request) goes to a file: a pipe nobody reads fills after about 240 requests (64 KB) and then
    blocks the server's event loop on its next log line, which capped every wrk run at roughly
    what fits in the pipe (about 72 req/s over 3 s, until 2026-12-01)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the server process
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{argv[0]} exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{argv[0]} did not answer on port {port}")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, path: str, n: int, token: str, seconds: float, lua: Path, pid: int,
        cursors: Path | None = None) -> dict:
    """One wrk run; with the server's CPU per request, which the machine's load disturbs less than req/s.
    ``cursors``: a file of list cursors, one of which replaces ``%s`` in ``path`` per request."""
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_N": str(n), "BENCH_PATH": path,
           "BENCH_CURSORS": str(cursors or "")}
    cpu_before = cpu_seconds(pid)
    r = subprocess.run(["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{round(seconds)}s", "--latency", "-s", str(lua),
                        f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True, check=False)
    if r.returncode:
        raise RuntimeError(f"wrk failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
    out = r.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        return round(float(value) * _UNITS[unit], 2)

    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / max(requests, 1)
    return {"rps": round(rps, 1), "p50_ms": pct(50), "p99_ms": pct(99), "cpu_ms_per_request": round(cpu_ms, 2),
            "requests": requests, "non_2xx": int(errors.group(1)) if errors else 0}


# -- one database, one size -----------------------------------------------------------------

async def prepare(db: str, count: int, work: Path) -> tuple[dict, dict]:
    if db == "sqlite":
        url = f"sqlite+aiosqlite:///{work / 'certpost.db'}"
        dropper = None
    else:
        url, dropper = await create_pg_database(f"certpost_bench_reads_{count}")
    await asyncio.to_thread(upgrade, url)
    settings = Settings(data_dir=work / "data", database_url=url, run_worker=False)
    ctx = AppContext.build(settings)
    try:
        seeded = await seed(ctx, count)
    finally:
        await ctx.close()
    env = {**os.environ, "CERTPOST_DATA_DIR": str(work / "data"), "CERTPOST_DATABASE_URL": url}
    return {**seeded, "url": url, "drop": dropper}, env


def endpoints(server_id: str) -> dict[str, str]:
    """Route name -> wrk path pattern (``%d``: a random domain index; ``%s``: a cursor from the
    file ``domain_cursors`` writes)."""
    return {
        "tls": "/v1/domains/d%06d.bench.test/tls",
        "domains": f"/v1/domains?server_id={server_id}&limit=100&cursor=%s",
        "certificates": "/v1/certificates?limit=100",
    }


def domain_cursor(i: int) -> str:
    """The cursor of the domain list's page after domain ``i``, as the API would return it."""
    return DOMAIN_ORDER.encode((domain_name(i),))


def domain_cursors(path: Path, count: int, how_many: int = 10_000) -> Path:
    """Cursors after random domains, one a line, for the domain list's wrk runs."""
    rng = random.Random(count)
    path.write_text("".join(domain_cursor(rng.randrange(count)) + "\n" for _ in range(min(count, how_many))))
    return path


def fill(pattern: str, i: int) -> str:
    if "%s" in pattern:
        return pattern % domain_cursor(i)
    return pattern % i if "%" in pattern else pattern


def measure(db: str, count: int, seconds: float, rounds: int, routes: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="certpost-reads-") as tmp:
        work = Path(tmp)
        seeded, env = asyncio.run(prepare(db, count, work))
        try:
            return run_servers(db, count, seconds, rounds, routes, work, seeded, env)
        finally:
            asyncio.run(drop_pg_database(seeded["drop"]))


def run_servers(db, count, seconds, rounds, routes, work, seeded, env) -> dict:
    lua = work / "random.lua"
    lua.write_text(LUA)
    cursors = domain_cursors(work / "cursors.txt", count)
    paths = endpoints(seeded["server_id"])
    port = free_port()
    certpost = start([CERTPOST, "serve", "--port", str(port)], env, port)
    anchor = None
    try:
        headers = {"Authorization": f"Bearer {seeded['token']}"}
        bodies = {}
        for route in routes:
            r = httpx.get(f"http://127.0.0.1:{port}{fill(paths[route], count // 2)}", headers=headers, timeout=30)
            r.raise_for_status()
            bodies[route] = r.json()
        sizes = {route: len(json.dumps(body, separators=(",", ":"))) for route, body in bodies.items()}
        (work / "bodies.json").write_text(json.dumps(bodies))
        anchor_port = free_port()
        anchor = start([sys.executable, str(BENCH / "anchor_app.py"), "--port", str(anchor_port),
                        "--bodies", str(work / "bodies.json")], os.environ.copy(), anchor_port)
        results = {}
        for route in routes:
            runs = {"anchor": [], "certpost": []}
            for _ in range(rounds):  # anchor, certpost, anchor, certpost ...
                runs["anchor"].append(wrk(anchor_port, f"/{route}/%d", count, seeded["token"], seconds, lua, anchor.pid))
                runs["certpost"].append(wrk(port, paths[route], count, seeded["token"], seconds, lua, certpost.pid,
                                            cursors if "%s" in paths[route] else None))
            results[route] = {"bytes": sizes[route], **runs}
        mem = process_memory(certpost.pid)
    finally:
        if anchor is not None:
            stop(anchor)
        stop(certpost)
    return {"db": db, "domains": count, "seed_seconds": seeded["seed_seconds"], "memory_mb": mem, "routes": results}


def best(runs: list[dict]) -> dict:
    """The run with the median req/s (of two: the better one; the machine is shared)."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[len(ordered) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 domains, SQLite, short runs")
    parser.add_argument("--sizes", default=None, help="comma-separated domain counts (default 1000,10000,100000)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default=None)
    parser.add_argument("--seconds", type=int, default=None, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=None, help="alternating anchor/certpost pairs per route")
    parser.add_argument("--routes", default="tls,domains,certificates")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1000,10000" if args.quick else "1000,10000,100000")).split(",")]
    dbs = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}[
        args.db or ("sqlite" if args.quick else "both")]
    seconds = args.seconds or 3
    rounds = args.rounds or (1 if args.quick else 2)
    routes = args.routes.split(",")
    load_before = os.getloadavg()
    measured = []
    for db in dbs:
        for count in sizes:
            print(f"-- {db}, {count:,} domains", flush=True)
            measured.append(measure(db, count, seconds, rounds, routes))
    rows = []
    for m in measured:
        for route, r in m["routes"].items():
            c, a = best(r["certpost"]), best(r["anchor"])
            rows.append([m["db"], f"{m['domains']:,}", route, r["bytes"], c["rps"], c["p50_ms"], c["p99_ms"],
                         a["rps"], a["p50_ms"], round(c["rps"] / a["rps"], 2), c["cpu_ms_per_request"],
                         a["cpu_ms_per_request"], round(a["cpu_ms_per_request"] / c["cpu_ms_per_request"], 2),
                         c["non_2xx"], m["memory_mb"].get("VmHWM"), m["memory_mb"].get("VmRSS")])
    print(table(["db", "domains", "route", "bytes", "certpost req/s", "p50 ms", "p99 ms", "anchor req/s",
                 "anchor p50 ms", "ratio", "CPU ms/req", "anchor CPU ms/req", "CPU ratio", "non-2xx",
                 "VmHWM MB", "VmRSS MB"], rows))
    flat = []
    for db in dbs:
        for route in routes:
            rps = [best(m["routes"][route]["certpost"])["rps"] for m in measured if m["db"] == db]
            ratios = [best(m["routes"][route]["certpost"])["rps"] / best(m["routes"][route]["anchor"])["rps"]
                      for m in measured if m["db"] == db]
            cpu = [best(m["routes"][route]["certpost"])["cpu_ms_per_request"] for m in measured if m["db"] == db]
            flat.append([db, route, round(max(rps) / min(rps), 2), round(max(ratios) / min(ratios), 2),
                         round(max(cpu) / min(cpu), 2)])
    print(table(["db", "route", "req/s max/min over sizes", "anchor ratio max/min over sizes",
                 "CPU ms/req max/min over sizes"], flat))
    print(f"load average before {load_before}, after {os.getloadavg()}")
    path = write_results("reads", {"machine": machine(), "load_before": load_before, "load_after": os.getloadavg(),
                                   "connections": CONNECTIONS, "threads": THREADS, "seconds": seconds,
                                   "rounds": rounds, "measured": measured})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
