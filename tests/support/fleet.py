"""Several `certpost worker` processes on PostgreSQL delivering to many real agents (nginx).

Shared by tests/e2e/test_several_workers.py and bench/workers.py. Everything is started as an
operator starts it: a fresh database on the PostgreSQL server (created and dropped here),
`certpost serve` with ``CERTPOST_RUN_WORKER=false``, N × `certpost worker` and one
`certpost agent --config FILE` per server, each with its own nginx (workers as www-data).
Only nginx runs: the agents' [postfix] and [dovecot] sections are switched off.

One platform certificate covers ``webmail.<domain>`` of one domain on every server, so
replacing its material (``PUT /v1/certificates/{id}``) is a change that reaches every server at
once. :meth:`Fleet.wait_served` proves it with TLS handshakes (SNI) against every nginx.

The proof that nothing is applied twice comes from three places (:meth:`Fleet.audit`):
the database (per deployment, at most one attempt with outcome applied; and a trigger that logs
every change of a server's lease owner, so a lease taken while another worker's had not run out
shows), and each agent's log (each generation applied once). The workers' logs give each
worker's claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from tests.support import daemons
from tests.support.api import list_all_sync
from tests.support.pki import CA, Issued, write_pem
from tests.support.serve import ServeProcess
from tests.support.threads import in_thread
from tests.support.tlsprobe import served_fingerprint

PG_SERVER = os.environ.get("CERTPOST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BASE = "workers.test"


def pg_reachable() -> bool:
    import socket

    host_port = PG_SERVER.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 5432)), timeout=1):
            return True
    except OSError:
        return False


def _admin(statement: str) -> None:
    """A statement on the server's administrative database (CREATE / DROP DATABASE)."""
    _query(PG_SERVER.rsplit("/", 1)[1], statement, fetch=False)


def _query(database: str, sql: str, *, fetch: bool = True) -> list[tuple]:
    """Rows of ``sql`` on ``database`` of the PostgreSQL server, run in a thread of its own (so
    that it works from inside an event loop too)."""
    import asyncpg

    async def run():
        conn = await asyncpg.connect(PG_SERVER.rsplit("/", 1)[0] + "/" + database)
        try:
            if not fetch:
                await conn.execute(sql)
                return []
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return in_thread(asyncio.run, run())


# Every change of a server's lease owner, written by the database itself under the row lock, so
# the order is exact: a new owner while the previous one's lease had not run out is an overlap.
LEASE_LOG = """
CREATE TABLE bench_lease_log (
    id bigserial PRIMARY KEY, server_id varchar NOT NULL, old_owner varchar, old_until timestamptz,
    new_owner varchar, new_until timestamptz, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION bench_lease_log() RETURNS trigger AS $$
BEGIN
    IF NEW.deploy_lease_owner IS DISTINCT FROM OLD.deploy_lease_owner THEN
        INSERT INTO bench_lease_log (server_id, old_owner, old_until, new_owner, new_until)
        VALUES (NEW.id, OLD.deploy_lease_owner, OLD.deploy_lease_until, NEW.deploy_lease_owner,
                NEW.deploy_lease_until);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_lease_log AFTER UPDATE ON servers FOR EACH ROW EXECUTE FUNCTION bench_lease_log();
"""


def domain(i: int) -> str:
    return f"d{i:02d}.{BASE}"


def webmail(i: int) -> str:
    return f"webmail.{domain(i)}"


@dataclass
class Member:
    """One server: its stack (nginx + agent) and its id at the controller."""

    index: int
    stack: daemons.Stack
    agent: daemons.AgentProcess
    server_id: str | None = None


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log: Path
    name: str


def _claims(path: Path) -> list[tuple[datetime, str]]:
    """(when, server id) of every "worker ... claimed server S" line of a process's JSON log,
    the time as local naive (what the benchmark's clock reads)."""
    out = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line that is not the log's (a crash's traceback): not a claim
            if not isinstance(record, dict):
                continue
            message = str(record.get("message", ""))
            if record.get("logger") == "certpost.worker" and " claimed server " in message:
                moment = datetime.fromisoformat(str(record["time"]))  # "...Z": UTC
                out.append((moment.astimezone().replace(tzinfo=None), message.rsplit(" ", 1)[-1]))
    return out


@dataclass
class Fleet:
    servers: int
    root: Path = field(default_factory=lambda: daemons.make_root("certpost-fleet-"))
    database: str = field(default_factory=lambda: f"certpost_workers_{uuid.uuid4().hex[:10]}")
    members: list[Member] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)
    ca: CA | None = None
    serve: ServeProcess | None = None
    token: str | None = None
    embedded: ServeProcess | None = None
    active: ServeProcess | None = None
    certificate_id: str | None = None
    fingerprint: str | None = None
    poll_seconds: float | None = None  # CERTPOST_WORKER_POLL_SECONDS for the workers; None: default
    lease_seconds: float | None = None  # CERTPOST_LEASE_SECONDS for the workers; None: default

    # -- set-up ----------------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return PG_SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + self.database

    def env(self) -> dict[str, str]:
        return {
            "CERTPOST_DATABASE_URL": self.database_url,
            "CERTPOST_DATA_DIR": str(self.root / "controller"),
            "CERTPOST_TRUST_BUNDLE": str(self.root / "trust.pem"),
            "CERTPOST_RUN_WORKER": "false",
            "CERTPOST_RETRY_BASE_SECONDS": "0.2",
            "CERTPOST_RETRY_MAX_SECONDS": "1",
        }

    def start(self) -> Fleet:
        self.ca = CA.create("certpost fleet root")
        write_pem(self.root / "trust.pem", self.ca.cert_pem)
        data = self.root / "controller"
        data.mkdir(mode=0o700)
        _admin(f'CREATE DATABASE "{self.database}"')
        env = {**os.environ, **self.env()}
        public_key = subprocess.run([daemons.certpost_command(), "controller-key"], env=env, capture_output=True,
                                    text=True, check=True, timeout=60).stdout.strip()
        self.serve = ServeProcess(data, env=self.env(), log=self.root / "serve.log").start(timeout=90)
        self.token = self.serve.wait_token()
        _query(self.database, LEASE_LOG, fetch=False)
        for i in range(self.servers):
            root = self.root / f"s{i:02d}"
            stack = daemons.write_stack(root, controller_public_key=public_key, hostname=f"mx{i:02d}.{BASE}")
            text = stack.agent_config.read_text()
            for section in ("postfix", "dovecot"):  # nginx only
                text = text.replace(f"[{section}]\n", f"[{section}]\nenabled = false\n", 1)
            stack.agent_config.write_text(text)
            agent = daemons.AgentProcess(stack)
            self.members.append(Member(i, stack, agent))
            agent.start()  # writes nginx's bootstrap files before nginx starts
            daemons.start_nginx(stack)
        self._register()
        return self

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=(self.active or self.serve).url, headers={"Authorization": f"Bearer {self.token}"},
                            timeout=60)

    def start_embedded(self) -> ServeProcess:
        """A second `certpost serve` on the same database, with its embedded worker (woken by its
        own API's commits: the anchor for the separate workers, which poll)."""
        env = {**self.env(), "CERTPOST_RUN_WORKER": "true"}
        self.embedded = ServeProcess(self.root / "controller", env=env,
                                     log=self.root / "serve-embedded.log").start(timeout=90)
        return self.embedded

    def use(self, serve: ServeProcess) -> None:
        """Send API requests to ``serve``; the embedded one is paused (SIGSTOP) unless used."""
        self.active = serve
        if self.embedded is not None:
            os.kill(self.embedded.process.pid, signal.SIGCONT if serve is self.embedded else signal.SIGSTOP)

    @staticmethod
    def pause(workers: list[WorkerProcess], paused: bool = True, *, stagger: float = 0.0, rng=None) -> None:
        """SIGSTOP / SIGCONT: idle workers (they hold no lease between changes) kept warm.

        Resumed together, workers would poll in step; ``stagger`` resumes each after a random
        delay in [0, stagger) so their polls fall at independent times, as in operation."""
        for w in workers:
            if not paused and stagger:
                time.sleep((rng or __import__("random")).random() * stagger)
            os.kill(w.process.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def claim_times(self, since: datetime) -> list[datetime]:
        """When any worker logged a claim at or after ``since`` (local time, as logged)."""
        paths = {w.log for w in self.workers} | {self.root / "serve.log", self.root / "serve-embedded.log"}
        return sorted(when for path in paths for when, _server in _claims(path) if when >= since)

    def issue(self) -> Issued:
        return self.ca.issue([webmail(i) for i in range(self.servers)])

    def _register(self) -> None:
        with self.http() as api:
            account = api.post("/v1/accounts", json={"name": "fleet"})
            account.raise_for_status()
            account_id = account.json()["id"]
            issued = self.issue()
            cert = api.post("/v1/certificates", json={"certificate_pem": issued.cert_pem,
                                                       "chain_pem": issued.chain_pem or None,
                                                       "private_key_pem": issued.key_pem})
            assert cert.status_code == 201, cert.text
            self.certificate_id, self.fingerprint = cert.json()["id"], issued.fingerprint
            for m in self.members:
                r = api.post("/v1/servers", json={
                    "name": f"mx{m.index:02d}", "hostname": m.stack.hostname, "software": "postfix-dovecot",
                    "agent_url": m.stack.agent_url, "agent_tls_fingerprint": m.agent.fingerprint})
                assert r.status_code == 201, r.text
                m.server_id = r.json()["id"]
                r = api.post("/v1/domains", json={"name": domain(m.index), "server_id": m.server_id,
                                                   "account_id": account_id})
                assert r.status_code == 201, r.text
                r = api.put(f"/v1/domains/{domain(m.index)}/bindings/webmail",
                            json={"certificate_id": self.certificate_id})
                assert r.status_code == 201, r.text

    # -- workers ---------------------------------------------------------------------------------

    def start_workers(self, count: int, label: str = "") -> list[WorkerProcess]:
        env = {**os.environ, **self.env()}
        if self.poll_seconds is not None:
            env["CERTPOST_WORKER_POLL_SECONDS"] = str(self.poll_seconds)
        if self.lease_seconds is not None:
            env["CERTPOST_LEASE_SECONDS"] = str(self.lease_seconds)
        for n in range(count):
            name = f"{label}w{n}"
            log = self.root / f"worker-{name}.log"
            with open(log, "ab") as out:
                process = subprocess.Popen([daemons.certpost_command(), "worker"], env=env, cwd=self.root,
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            self.workers.append(WorkerProcess(process, log, name))
        deadline = time.monotonic() + 90
        for w in self.workers[-count:]:
            while " started" not in w.log.read_text(errors="replace"):
                if w.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"certpost worker did not start: {w.log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.05)
        return self.workers[-count:]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time so far (user + system) of the controller's processes, of the agents (with the
        commands they ran and waited for: ``nginx -t``, ``nginx -s reload``) and of the nginx
        masters (with their exited workers)."""

        def cpu(pid: int | None, children: bool = False) -> float:
            with contextlib.suppress(OSError, IndexError, ValueError, TypeError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks = int(fields[11]) + int(fields[12])
                if children:
                    ticks += int(fields[13]) + int(fields[14])
                return ticks / os.sysconf("SC_CLK_TCK")
            return 0.0

        def nginx_pid(m: Member) -> int | None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int((m.stack.nginx_dir / "nginx.pid").read_text().split()[0])
            return None

        running = [w.process.pid for w in self.workers if w.process.poll() is None]
        return {
            "serve": cpu(self.serve.process.pid) + (cpu(self.embedded.process.pid) if self.embedded else 0.0),
            "workers": sum(cpu(pid) for pid in running),
            "agents": sum(cpu(m.agent.process.pid, True) for m in self.members if m.agent.process),
            "nginx": sum(cpu(nginx_pid(m), True) for m in self.members),
        }

    def stop_workers(self) -> None:
        for w in self.workers:
            if w.process.poll() is None:
                os.kill(w.process.pid, signal.SIGCONT)
                w.process.send_signal(signal.SIGINT)
        for w in self.workers:
            try:
                w.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait(timeout=10)

    # -- changes and what is served --------------------------------------------------------------

    def replace(self) -> tuple[str, float]:
        """New material for the one certificate; returns (its fingerprint, perf_counter at the
        response)."""
        issued = self.issue()
        with self.http() as api:
            r = api.put(f"/v1/certificates/{self.certificate_id}", json={
                "certificate_pem": issued.cert_pem, "chain_pem": issued.chain_pem or None,
                "private_key_pem": issued.key_pem})
            answered = time.perf_counter()
        assert r.status_code == 200, r.text
        self.fingerprint = issued.fingerprint
        return issued.fingerprint, answered

    def wait_served(self, fingerprint: str, since: float, *, timeout: float = 60, every: float = 0.02) -> list[float]:
        """Seconds from ``since`` until each server's nginx serves ``fingerprint`` for its
        webmail name (a TLS handshake with SNI every ``every`` seconds per server)."""

        def watch(m: Member) -> float:
            deadline = time.monotonic() + timeout
            while True:
                with contextlib.suppress(OSError, Exception):
                    if served_fingerprint("127.0.0.1", m.stack.ports["https"], "https", webmail(m.index),
                                          timeout=2) == fingerprint:
                        return time.perf_counter() - since
                if time.monotonic() > deadline:
                    raise AssertionError(f"server {m.index} did not serve {fingerprint[:12]} in {timeout} s")
                time.sleep(every)

        with ThreadPoolExecutor(max_workers=len(self.members)) as pool:
            return list(pool.map(watch, self.members))

    def wait_applied(self, timeout: float = 60) -> None:
        """Until the controller records every server's desired generation as applied."""
        deadline = time.monotonic() + timeout
        with self.http() as api:
            while True:
                servers = list_all_sync(api, "/v1/servers", limit=1000)
                if all(s["applied_generation"] == s["desired_generation"] for s in servers):
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"not applied in {timeout} s: {servers}")
                time.sleep(0.05)

    # -- the proof -------------------------------------------------------------------------------

    def audit(self, since: datetime | None = None) -> dict:
        """Nothing applied twice, no two leases at once, and each worker's claims.

        ``since`` (naive local time, as the log lines carry it) limits the worker-log part to
        one phase; the database and agent parts always cover the whole run."""
        rows = _query(self.database, """
            SELECT d.server_id, d.generation, d.status,
                   count(a.id) FILTER (WHERE a.outcome = 'applied') AS applied
            FROM deployments d LEFT JOIN deployment_attempts a ON a.deployment_id = d.id
            GROUP BY d.server_id, d.generation, d.status""")
        db_twice = [(s, g, n) for s, g, _st, n in rows if n > 1]
        db_applied_without = [(s, g) for s, g, st, n in rows if st == "applied" and n != 1]
        db_applied = sum(1 for *_x, n in rows if n == 1)

        # A new owner while another owner's lease was still running (taken, not expired).
        overlaps_db = _query(self.database, """
            SELECT server_id, old_owner, new_owner, at FROM bench_lease_log
            WHERE new_owner IS NOT NULL AND old_owner IS NOT NULL AND old_owner <> new_owner
              AND old_until > at""")
        lease_claims = _query(self.database, """
            SELECT split_part(new_owner, ':', 2), count(*) FROM bench_lease_log
            WHERE new_owner IS NOT NULL GROUP BY 1""")
        claims: dict[str, int] = {}  # "worker ... claimed server S" lines (since ``since``)
        sources = dict([(w.log, w.name) for w in self.workers] + [(self.root / "serve.log", "serve"),
                                                                  (self.root / "serve-embedded.log", "embedded")])
        for path, name in sources.items():
            if path.exists():
                claims[name] = sum(1 for when, _server in _claims(path) if since is None or when >= since)

        agent_twice = {}
        agent_applied = 0
        applied_re = re.compile(r"applied generation (\d+) ")
        for m in self.members:
            generations = applied_re.findall(m.agent.log.read_text(errors="replace"))
            agent_applied += len(generations)
            seen = [g for g in generations]
            if len(seen) != len(set(seen)):
                agent_twice[m.index] = sorted({g for g in seen if seen.count(g) > 1})
        return {
            "db_deployments_applied": db_applied,
            "db_applied_twice": db_twice,
            "db_applied_without_attempt": db_applied_without,
            "lease_overlaps_db": [tuple(map(str, r)) for r in overlaps_db],
            "lease_claims_by_pid": {pid: n for pid, n in lease_claims},
            "agent_applies": agent_applied,
            "agent_generations_applied_twice": agent_twice,
            "claims_per_worker": claims,
            "ok": not (db_twice or db_applied_without or overlaps_db or agent_twice),
        }

    # -- tear-down -------------------------------------------------------------------------------

    def close(self, keep: bool = False) -> None:
        self.stop_workers()
        for serve in (self.embedded, self.serve):
            if serve is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(serve.process.pid, signal.SIGCONT)
                serve.stop()
        for m in self.members:
            with contextlib.suppress(Exception):
                m.agent.stop()
            with contextlib.suppress(Exception):
                daemons.stop_nginx(m.stack)
        with contextlib.suppress(Exception):
            _admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_fleet(servers: int, *, poll_seconds: float | None = None, lease_seconds: float | None = None,
                  keep: bool = False):
    fleet = Fleet(servers, poll_seconds=poll_seconds, lease_seconds=lease_seconds)
    try:
        yield fleet.start()
    finally:
        fleet.close(keep=keep)
