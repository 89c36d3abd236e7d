"""End to end through the API: ``certpost serve`` + one real agent with real Postfix and nginx.

    .venv/bin/python bench/e2e.py [--quick] [--sizes 1000,10000] [--db sqlite|postgres|both] [--rounds 3]
                                  [--reads 10000] [--env MALLOC_ARENA_MAX=2] [--no-seed-cache]

For each database (both by default) every size N is brought up at once, each with: a fresh
controller database (SQLite file, or a fresh PostgreSQL database on 127.0.0.1:5432) seeded
through the services, not HTTP (N domains, each with its own EC P-256 certificate bound to
webmail.<d> and mail.<d>); ``certpost serve`` started as users run it (a subprocess, embedded
worker); a real agent (``certpost agent --config FILE``) in front of real Postfix and nginx
(bench/agentstack.py; Dovecot is left out at every size, as bench/agent_apply.py does at
10,000, so the sizes compare). Measured:

* full deploy, one size after the other: ``PATCH /v1/servers/{id}`` (agent URL and pin)
  response → the server's ``applied_generation`` reaches the generation that PATCH queued;
* one-domain changes, ``--rounds`` rounds of 5 domains, each domain flipping between its own
  certificate and a second one: ``PUT /v1/domains/{d}/bindings/mail`` response → that
  certificate served on SMTPS (Postfix, SNI ``mail.<d>``), then ``PUT …/bindings/webmail`` →
  served on HTTPS (nginx, SNI ``webmail.<d>``); handshakes every 10 ms. The sizes take turns
  change by change (the order swapped every domain), so that whatever else the machine does
  falls on every size alike, and a change starts only once the previous delivery is recorded
  (the server's applied generation is its desired one) and 0.3 s have passed for the daemons'
  reloads: each sample is one change alone, not the tail of the one before. The controller's
  part, PUT response → the agent has received its ``PUT /v1/config``, is read from the agent's
  JSON log line ``PUT /v1/config: N bytes received`` (its time, ms). Medians and quartiles;
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

import asyncpg
import httpx
from agentstack import bench_stack
from common import (
    PG_ADMIN,
    REPO,
    RESULTS,
    create_pg_database,
    drop_pg_database,
    machine,
    pg_database_exists,
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
    originals: dict[str, tuple[str, str]] = {}
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
                    originals[name] = (cert.id, cert.fingerprint_sha256)
                    row = await store_issued(ctx, certs, ca, names, bench.account_id, f"{name} new")
                    alternates[name] = (row.id, row.fingerprint_sha256)
            await session.commit()
    return {"token": bench.token, "server_id": bench.server_id, "alternates": alternates, "originals": originals}


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


SEED_VERSION = "v2"  # bump when what ``seed`` writes changes: older caches are not read


async def create_database(db: str, tmp: Path, template: str | None) -> tuple[str, str | None]:
    if db != "postgres":
        return f"sqlite+aiosqlite:///{tmp / 'certpost.db'}", None
    return await create_pg_database("certpost_e2e", template)


async def copy_pg_database(name: str, copy: str) -> None:
    """``copy`` made anew as a copy of ``name`` (which no session may be using)."""
    await drop_pg_database(copy)
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
    finally:
        await conn.close()


class Size:
    """One size's running stack (daemons, agent, ``certpost serve``), seeded and fully deployed,
    kept up while the change runs alternate between the sizes."""

    def __init__(self, size: int, db: str, env_extra: dict, cache: Path | None, stack_exit: contextlib.ExitStack):
        self.size, self.db = size, db
        self.result: dict = {"domains": size, "db": db, "changes": []}
        self.tmp = Path(tempfile.mkdtemp(prefix="certpost-e2e-"))
        stack_exit.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        data = self.tmp / "data"
        cached = cache / f"{db}-{size}-{SEED_VERSION}" if cache else None
        template = f"certpost_e2e_seed_{size}_{SEED_VERSION}" if cached and db == "postgres" else None
        reuse = cached is not None and (cached / "seed.json").exists() and (
            template is None or asyncio.run(pg_database_exists(template)))
        if reuse:
            shutil.copytree(cached, data)
        else:
            data.mkdir()
        url, pg_name = asyncio.run(create_database(db, data, template if reuse else None))
        stack_exit.callback(lambda: asyncio.run(drop_pg_database(pg_name)))
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
        self.stack, _client, self.agent = stack_exit.enter_context(
            bench_stack(dovecot=False, verify_timeout=600, controller_public_key=key))
        settings = Settings(data_dir=data, database_url=url, run_worker=False, trust_bundle=trust)

        async def do_seed():
            ctx = AppContext.build(settings)
            try:
                return await seed(ctx, issuing, size, self.stack.hostname)
            finally:
                await ctx.close()

        t0 = time.perf_counter()
        if (data / "seed.json").exists():
            self.seeded = json.loads((data / "seed.json").read_text())
        else:
            upgrade(url)
            self.seeded = asyncio.run(do_seed())
            (data / "seed.json").write_text(json.dumps(self.seeded))
            if cached:
                shutil.rmtree(cached, ignore_errors=True)
                shutil.copytree(data, cached)
            if template:  # kept for the next run (``--no-seed-cache`` ignores it)
                asyncio.run(copy_pg_database(pg_name, template))
        self.result["seed_s"] = round(time.perf_counter() - t0, 1)
        print(f"  {size}: seeded in {self.result['seed_s']} s", flush=True)
        self.serve = ServeProcess(data, env=env, log=self.tmp / "serve.log").start()
        stack_exit.callback(self.serve.stop)
        self.pid = self.serve.process.pid
        self.headers = {"Authorization": f"Bearer {self.seeded['token']}"}
        self.api = httpx.Client(base_url=self.serve.url, headers=self.headers, timeout=600)
        stack_exit.callback(self.api.close)
        self.sid = self.seeded["server_id"]
        self.result["memory_started"] = process_memory(self.pid)
        # Each changed domain flips between its own certificate and its alternate.
        self.flips = {name: [tuple(self.seeded["originals"][name]), tuple(alt)]
                      for name, alt in self.seeded["alternates"].items()}

    def full_deploy(self) -> None:
        """The agent's URL and pin → applied."""
        t0 = time.monotonic()
        r = self.api.patch(f"/v1/servers/{self.sid}", json={"agent_url": self.stack.agent_url,
                                                             "agent_tls_fingerprint": self.agent.fingerprint})
        r.raise_for_status()
        t_response = time.monotonic()
        self.settle(r.json()["desired_generation"], timeout=3600)
        self.result["full_deploy_s"] = round(time.monotonic() - t_response, 2)
        self.result["patch_response_s"] = round(t_response - t0, 3)
        print(f"  {self.size}: full deploy {self.result['full_deploy_s']} s", flush=True)
        time.sleep(1)
        self.result["memory_deployed"] = process_memory(self.pid)

    def settle(self, generation: int | None = None, timeout: float = 30) -> None:
        """Until the server's applied generation reaches ``generation`` (its desired one when
        None): the delivery is recorded and nothing is on its way."""
        deadline = time.monotonic() + timeout
        while True:
            server = self.api.get(f"/v1/servers/{self.sid}").json()
            if server["applied_generation"] >= (generation or server["desired_generation"]):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"server of {self.size} did not reach generation {generation}: {server}")
            time.sleep(0.02)

    def change(self, name: str) -> dict:
        """One domain's mail binding, then its webmail binding, to its other certificate, each
        timed from the PUT's response to that certificate on the wire, each started only once
        the previous delivery is recorded (``settle``) and the daemons have had a moment."""
        self.flips[name].reverse()
        cert_id, fp = self.flips[name][0]
        row = {"domain": name, "domains": self.size}
        ports = self.stack.ports
        for service, port, protocol in (("mail", ports["smtps"], "smtps"), ("webmail", ports["https"], "https")):
            self.settle()
            time.sleep(SETTLE_S)
            before = len(received_times(self.agent.log))
            t0 = time.monotonic()
            r = self.api.put(f"/v1/domains/{name}/bindings/{service}", json={"certificate_id": cert_id})
            r.raise_for_status()
            t_mono, t_wall = time.monotonic(), time.time()
            row[f"put_{service}_ms"] = round((t_mono - t0) * 1000, 1)
            served = wait_served(port, protocol, f"{service}.{name}", fp)
            row[f"{service}_served_ms"] = round((served - t_mono) * 1000, 1)
            deadline = time.monotonic() + 10
            while len(received_times(self.agent.log)) <= before and time.monotonic() < deadline:
                time.sleep(0.01)
            got = received_times(self.agent.log)[before:]
            if got:
                row[f"{service}_received_ms"] = round((got[0][0] - t_wall) * 1000, 1)
                row[f"{service}_bytes"] = got[0][1]
        self.result["changes"].append(row)
        return row

    def finish(self, read_count: int) -> dict:
        result = self.result
        for key_ in CHANGE_KEYS:
            vals = [c[key_] for c in result["changes"] if key_ in c]
            result[f"median_{key_}"] = round(statistics.median(vals), 1) if vals else None
            if len(vals) >= 4:
                q = statistics.quantiles(vals, n=4)
                result[f"quartiles_{key_}"] = [round(q[0], 1), round(q[2], 1)]
        self.settle()
        t0 = time.monotonic()
        result["reads"] = read_count
        result["reads_per_s"] = round(asyncio.run(reads(self.serve.url, self.headers, read_count, self.size)), 1)
        result["reads_s"] = round(time.monotonic() - t0, 1)
        result["memory_after_reads"] = process_memory(self.pid)
        print(f"  {self.size}: reads {result['reads_per_s']} req/s; memory {result['memory_after_reads']}", flush=True)
        return result


SETTLE_S = 0.3  # after the previous delivery is recorded: Postfix's and nginx's reloads finish
CHANGE_KEYS = ("mail_served_ms", "webmail_served_ms", "mail_received_ms", "webmail_received_ms",
               "put_mail_ms", "put_webmail_ms")


def run_db(db: str, sizes: list[int], rounds: int, read_count: int, env_extra: dict, cache: Path | None) -> list[dict]:
    """Every size up at once, then the change runs in turn: round after round, each changed
    domain on every size, the order of the sizes swapped from one domain to the next, so that
    whatever else the machine does falls on all sizes alike (issue 8: five samples per size, run
    one size after the other, differed by more than the sizes did)."""
    with contextlib.ExitStack() as stack_exit:
        up = []
        for size in sizes:
            print(f"{size} domains on {db}", flush=True)
            up.append(Size(size, db, env_extra, cache, stack_exit))
        for one in up:  # one at a time: a full deploy keeps the machine busy
            one.full_deploy()
        turn = 0
        for _ in range(rounds):
            for index in range(CHANGES):
                order = up if turn % 2 == 0 else up[::-1]
                turn += 1
                for one in order:
                    name = list(one.flips)[index]
                    print(f"  {one.change(name)}", flush=True)
        return [one.finish(read_count) for one in up]


def report(db: str, results: list[dict]) -> None:
    rows = []
    for r in results:
        rows.append([r["domains"], r["full_deploy_s"], r["median_put_mail_ms"], r["median_mail_received_ms"],
                     r["median_mail_served_ms"], r["median_put_webmail_ms"], r["median_webmail_received_ms"],
                     r["median_webmail_served_ms"], r["memory_deployed"]["VmRSS"], r["memory_after_reads"]["VmRSS"],
                     r["memory_after_reads"]["VmHWM"], r["reads_per_s"]])
    if len(results) > 1:
        a, b = results[0], results[-1]
        ratio = lambda k: round(b[k] / a[k], 2) if a.get(k) and b.get(k) else None
        rows.append([f"ratio {b['domains']}/{a['domains']}", ratio("full_deploy_s"), ratio("median_put_mail_ms"),
                     ratio("median_mail_received_ms"), ratio("median_mail_served_ms"), ratio("median_put_webmail_ms"),
                     ratio("median_webmail_received_ms"), ratio("median_webmail_served_ms"), None, None, None,
                     ratio("reads_per_s")])
    print(f"\n{db}, medians of {len(results[0]['changes'])} changes per size, the sizes alternating")
    print(table(["domains", "full deploy s", "mail PUT ms", "PUT→agent (mail) ms", "PUT→SMTPS ms", "webmail PUT ms",
                 "PUT→agent (webmail) ms", "PUT→HTTPS ms", "RSS deployed MB", "RSS after reads MB", "VmHWM MB",
                 "reads/s"], rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 domains, SQLite, one round, 1,000 reads")
    parser.add_argument("--sizes", default=None, help="comma-separated domain counts (default 1000,10000)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default=None,
                        help="default both (sqlite with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"change rounds, each {CHANGES} domains on every size (default 3, 1 with --quick)")
    parser.add_argument("--reads", type=int, default=None, help="GET /v1/domains/{d}/tls reads (default 10000)")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for certpost serve")
    parser.add_argument("--seed-cache", type=Path, default=RESULTS / "e2e-seed",
                        help="keep each seeded data directory here and reuse it, with, on PostgreSQL, the seeded "
                             "database kept as certpost_e2e_seed_<size>_<version> and copied as a template (seeding "
                             "10,000 takes minutes; serve migrates a copy at start). Default bench/results/e2e-seed")
    parser.add_argument("--no-seed-cache", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1000" if args.quick else "1000,10000")).split(",")]
    read_count = args.reads or (1000 if args.quick else 10000)
    rounds = args.rounds or (1 if args.quick else 3)
    dbs = {"both": ["sqlite", "postgres"]}.get(args.db, [args.db]) if args.db else (
        ["sqlite"] if args.quick else ["sqlite", "postgres"])
    env_extra = dict(e.split("=", 1) for e in args.env)
    for db in dbs:
        load = os.getloadavg()
        results = run_db(db, sizes, rounds, read_count, env_extra, None if args.no_seed_cache else args.seed_cache)
        report(db, results)
        print(f"load average at start: {load}; at end: {os.getloadavg()}")
        write_results(f"e2e-{db}", {"machine": machine(), "load_start": load, "load_end": os.getloadavg(),
                                    "env": env_extra, "rounds": rounds, "results": results})


if __name__ == "__main__":
    main()
