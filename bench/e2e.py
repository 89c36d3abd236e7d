"""End to end through the API: ``certpost serve`` + one real agent with real Postfix and nginx.

    .venv/bin/python bench/e2e.py [--quick] [--sizes 1000,10000] [--db sqlite|postgres] [--reads 10000]
                                  [--env MALLOC_ARENA_MAX=2] [--no-seed-cache]

For each size N: a fresh controller database (SQLite file by default, or a fresh PostgreSQL
database on 127.0.0.1:5432) seeded through the services, not HTTP (N domains, each with its own
EC P-256 certificate bound to webmail.<d> and mail.<d>); ``certpost serve`` started as users run
it (a subprocess, embedded worker); a real agent (``certpost agent --config FILE``) in front of
real Postfix and nginx (bench/agentstack.py; Dovecot is left out at every size, as
bench/agent_apply.py does at 10,000, so the sizes compare). Measured:

* full deploy: ``PATCH /v1/servers/{id}`` (agent URL and pin) response → the server's
  ``applied_generation`` reaches the generation that PATCH queued (``GET /v1/servers/{id}``);
* one-domain change (median of 5 domains): ``PUT /v1/domains/{d}/bindings/mail`` to a new
  certificate, response → that certificate served on SMTPS (Postfix, SNI ``mail.<d>``), then
  ``PUT …/bindings/webmail`` → served on HTTPS (nginx, SNI ``webmail.<d>``); handshakes every
  10 ms. The controller's part, PUT response → the agent has received its ``PUT /v1/config``,
  is read from the agent's JSON log line ``PUT /v1/config: N bytes received`` (its time, ms);
* ``certpost serve``'s VmHWM and VmRSS (/proc/<pid>/status) after the full deploy and after
  ``--reads`` reads of ``GET /v1/domains/{d}/tls`` (16 concurrent httpx clients).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from agentstack import bench_stack
from common import (
    REPO,
    RESULTS,
    create_pg_database,
    drop_pg_database,
    machine,
    process_memory,
    table,
    write_results,
)
from seeding import ADMIN, store_issued, tenant

from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.config import Settings
from app.context import AppContext
from app.domains.repository import DomainRepository
from app.domains.service import DomainService
from app.migrate import upgrade
from tests.support.pki import CA, write_pem
from tests.support.serve import ServeProcess
from tests.support.tlsprobe import ProbeError, served_fingerprint

CHANGES = 5


def domain(i: int) -> str:
    return f"d{i:05d}.bench.test"


async def seed(ctx: AppContext, ca: CA, count: int, hostname: str) -> dict:
    """N domains with their own certificate on both services, plus a second certificate for
    each of the CHANGES domains the change runs use."""
    bench = await tenant(ctx, hostname)
    changed = [domain(i) for i in range(0, count, max(1, count // CHANGES))][:CHANGES]
    alternates: dict[str, tuple[str, str]] = {}
    batch = 500
    for start in range(0, count, batch):
        async with ctx.sessionmaker() as session:
            certs = CertificateService(CertificateRepository(session), ctx.master_key)
            domains = DomainService(DomainRepository(session), certs)
            for i in range(start, min(count, start + batch)):
                name = domain(i)
                names = [f"webmail.{name}", f"mail.{name}"]
                cert = await store_issued(ctx, certs, ca, names, bench.account_id, name)
                await domains.create(name, bench.server_id, bench.account_id)
                await domains.bind(ADMIN, name, "webmail", cert.id)
                await domains.bind(ADMIN, name, "mail", cert.id)
                if name in changed:
                    row = await store_issued(ctx, certs, ca, names, bench.account_id, f"{name} new")
                    alternates[name] = (row.id, row.fingerprint_sha256)
            await session.commit()
    return {"token": bench.token, "server_id": bench.server_id, "alternates": alternates}


def wait_served(port: int, protocol: str, sni: str, fingerprint: str, timeout: float = 60) -> float:
    """Monotonic time at which ``fingerprint`` is first seen (handshakes every 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ProbeError, OSError):
            if served_fingerprint("127.0.0.1", port, protocol, sni, timeout=2) == fingerprint:
                return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"{sni} on port {port} did not serve {fingerprint[:12]} within {timeout} s")


_RECEIVED = re.compile(r"^PUT /v1/config: (\d+) bytes received")


def received_times(log: Path) -> list[tuple[float, int]]:
    """(wall-clock time, bytes) of each ``PUT /v1/config`` the agent logged receiving (its JSON
    log lines, app/kit/logs.py: ``time`` is RFC 3339 UTC with milliseconds)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        m = _RECEIVED.match(str(record.get("message", ""))) if record.get("logger") == "certpost.agent" else None
        if m:
            at = dt.datetime.fromisoformat(record["time"]).timestamp()
            out.append((at, int(m.group(1))))
    return out


async def reads(url: str, headers: dict, count: int, size: int, concurrency: int = 16) -> float:
    names = [domain(random.randrange(size)) for _ in range(count)]
    started = time.perf_counter()

    async def one(client, queue):
        while queue:
            r = await client.get(f"/v1/domains/{queue.pop()}/tls", headers=headers)
            assert r.status_code == 200, r.text[:300]

    async with httpx.AsyncClient(base_url=url, timeout=120,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(one(client, names) for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def create_database(db: str, tmp: Path) -> tuple[str, str | None]:
    if db != "postgres":
        return f"sqlite+aiosqlite:///{tmp / 'certpost.db'}", None
    return await create_pg_database("certpost_e2e")


def one_size(size: int, db: str, read_count: int, env_extra: dict, cache: Path | None = None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="certpost-e2e-"))
    data = tmp / "data"
    cached = cache / f"sqlite-{size}" if cache and db == "sqlite" else None
    if cached and (cached / "seed.json").exists():
        shutil.copytree(cached, data)
    else:
        data.mkdir()
    url, pg_name = asyncio.run(create_database(db, data))
    ca = CA.create("e2e root")
    issuing = ca.intermediate("e2e issuing")
    trust = data / "trust.pem"
    if not trust.exists():
        write_pem(trust, ca.cert_pem)
    env = {"CERTPOST_DATA_DIR": str(data), "CERTPOST_DATABASE_URL": url, "CERTPOST_TRUST_BUNDLE": str(trust),
           "CERTPOST_RETRY_BASE_SECONDS": "0.5", "CERTPOST_RETRY_MAX_SECONDS": "2",
           "CERTPOST_AGENT_TIMEOUT_SECONDS": "1800", **env_extra}
    key = subprocess.run([sys.executable, "-m", "app.cli", "controller-key"], cwd=REPO, env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    result: dict = {"domains": size, "db": db}
    serve = None
    try:
        with bench_stack(dovecot=False, verify_timeout=600, controller_public_key=key) as (stack, _client, agent):
            settings = Settings(data_dir=data, database_url=url, run_worker=False, trust_bundle=trust)

            async def do_seed():
                ctx = AppContext.build(settings)
                try:
                    return await seed(ctx, issuing, size, stack.hostname)
                finally:
                    await ctx.close()

            t0 = time.perf_counter()
            if (data / "seed.json").exists():
                seeded = json.loads((data / "seed.json").read_text())
            else:
                upgrade(url)
                seeded = asyncio.run(do_seed())
                (data / "seed.json").write_text(json.dumps(seeded))
                if cached:
                    shutil.copytree(data, cached)
            result["seed_s"] = round(time.perf_counter() - t0, 1)
            print(f"  seeded {size} domains in {result['seed_s']} s", flush=True)
            serve = ServeProcess(data, env=env, log=tmp / "serve.log").start()
            pid = serve.process.pid
            headers = {"Authorization": f"Bearer {seeded['token']}"}
            api = httpx.Client(base_url=serve.url, headers=headers, timeout=600)
            sid = seeded["server_id"]
            result["memory_started"] = process_memory(pid)

            # Full deploy: the agent's URL and pin → applied.
            t0 = time.monotonic()
            r = api.patch(f"/v1/servers/{sid}", json={"agent_url": stack.agent_url,
                                                      "agent_tls_fingerprint": agent.fingerprint})
            r.raise_for_status()
            t_response = time.monotonic()
            target = r.json()["desired_generation"]
            while True:
                server = api.get(f"/v1/servers/{sid}").json()
                if server["applied_generation"] >= target:
                    break
                time.sleep(0.1)
            result["full_deploy_s"] = round(time.monotonic() - t_response, 2)
            result["patch_response_s"] = round(t_response - t0, 3)
            print(f"  full deploy {result['full_deploy_s']} s", flush=True)
            time.sleep(1)
            result["memory_deployed"] = process_memory(pid)

            # One-domain changes.
            changes = []
            ports = stack.ports
            for name, (cert_id, fp) in seeded["alternates"].items():
                row = {"domain": name}
                for service, port, protocol in (("mail", ports["smtps"], "smtps"), ("webmail", ports["https"], "https")):
                    before = len(received_times(agent.log))
                    t0 = time.monotonic()
                    r = api.put(f"/v1/domains/{name}/bindings/{service}", json={"certificate_id": cert_id})
                    r.raise_for_status()
                    t_mono, t_wall = time.monotonic(), time.time()
                    row[f"put_{service}_ms"] = round((t_mono - t0) * 1000, 1)
                    served = wait_served(port, protocol, f"{service}.{name}", fp)
                    row[f"{service}_served_ms"] = round((served - t_mono) * 1000, 1)
                    deadline = time.monotonic() + 10
                    while len(received_times(agent.log)) <= before and time.monotonic() < deadline:
                        time.sleep(0.01)
                    got = received_times(agent.log)[before:]
                    if got:
                        row[f"{service}_received_ms"] = round((got[0][0] - t_wall) * 1000, 1)
                        row[f"{service}_bytes"] = got[0][1]
                    time.sleep(0.3)  # let the delivery's record land before the next change
                changes.append(row)
                print(f"  {row}", flush=True)
            result["changes"] = changes
            for key_ in ("mail_served_ms", "webmail_served_ms", "mail_received_ms", "webmail_received_ms",
                         "put_mail_ms", "put_webmail_ms"):
                vals = [c[key_] for c in changes if key_ in c]
                result[f"median_{key_}"] = round(statistics.median(vals), 1) if vals else None

            # Reads.
            t0 = time.monotonic()
            result["reads"] = read_count
            result["reads_per_s"] = round(asyncio.run(reads(serve.url, headers, read_count, size)), 1)
            result["reads_s"] = round(time.monotonic() - t0, 1)
            result["memory_after_reads"] = process_memory(pid)
            print(f"  reads {result['reads_per_s']} req/s; memory {result['memory_after_reads']}", flush=True)
            api.close()
    finally:
        if serve is not None:
            serve.stop()
        asyncio.run(drop_pg_database(pg_name))
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 domains and 1,000 reads")
    parser.add_argument("--sizes", default=None, help="comma-separated domain counts (default 1000,10000)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--reads", type=int, default=None, help="GET /v1/domains/{d}/tls reads (default 10000)")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for certpost serve")
    parser.add_argument("--seed-cache", type=Path, default=RESULTS / "e2e-seed",
                        help="SQLite only: keep each seeded data directory here and reuse it (seeding 10,000 "
                             "takes about 3 minutes; serve migrates it at start). Default bench/results/e2e-seed")
    parser.add_argument("--no-seed-cache", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1000" if args.quick else "1000,10000")).split(",")]
    read_count = args.reads or (1000 if args.quick else 10000)
    env_extra = dict(e.split("=", 1) for e in args.env)
    load = os.getloadavg()
    results = []
    for size in sizes:
        print(f"{size} domains on {args.db}", flush=True)
        results.append(one_size(size, args.db, read_count, env_extra, None if args.no_seed_cache else args.seed_cache))
    rows = []
    for r in results:
        rows.append([r["domains"], r["full_deploy_s"], r["median_mail_received_ms"], r["median_mail_served_ms"],
                     r["median_webmail_received_ms"], r["median_webmail_served_ms"],
                     r["memory_deployed"]["VmRSS"], r["memory_after_reads"]["VmRSS"],
                     r["memory_after_reads"]["VmHWM"], r["reads_per_s"]])
    if len(results) > 1:
        a, b = results[0], results[-1]
        ratio = lambda k: round(b[k] / a[k], 2) if a.get(k) and b.get(k) else None
        rows.append([f"ratio {b['domains']}/{a['domains']}", ratio("full_deploy_s"), ratio("median_mail_received_ms"),
                     ratio("median_mail_served_ms"), ratio("median_webmail_received_ms"),
                     ratio("median_webmail_served_ms"), None, None, None, ratio("reads_per_s")])
    print()
    print(table(["domains", "full deploy s", "PUT→agent (mail) ms", "PUT→SMTPS ms", "PUT→agent (webmail) ms",
                 "PUT→HTTPS ms", "RSS deployed MB", "RSS after reads MB", "VmHWM MB", "reads/s"], rows))
    print(f"load average at start: {load}; at end: {os.getloadavg()}")
    write_results(f"e2e-{args.db}", {"machine": machine(), "load_start": load, "load_end": os.getloadavg(),
                                     "env": env_extra, "results": results})


if __name__ == "__main__":
    main()
