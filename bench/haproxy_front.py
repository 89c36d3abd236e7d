"""The HAProxy TLS front for Dovecot's implicit-TLS ports at 1,000, 10,000 and 50,000 domains (issue 12).

    .venv/bin/python bench/haproxy_front.py [--quick] [--sizes 1000,10000,50000] [--changes 5] [--seconds 5]

For each N (a fresh front stack each time, tests/support/haproxy.py: Postfix, Dovecot behind
HAProxy 2.6, nginx, the agent): N domains, each with its own EC P-256 certificate bound to
mail.<d>. Measured:

* the first full apply (bundles written, the crt-list persisted, one seamless reload because
  N exceeds ``runtime_max_changes``);
* the front's cold start (``haproxy -W -D`` until a handshake for a bound name on the IMAPS port
  succeeds) and a seamless reload (master CLI ``reload`` until the new worker serves), and the
  RSS of the master and the worker afterwards, per domain;
* one-domain changes as the controller sends them (a delta document with one new certificate):
  the agent's PUT (stage, switch, runtime API, verify) and the time from the start of the PUT,
  and from its response, until a client on the IMAPS port is served the new certificate; the
  worker PID before and after (no reload);
* handshakes per second with SNI through the front (IMAPS, TLS + the IMAP greeting relayed from
  Dovecot over PROXY v2) against Dovecot's own IMAPS listener on the same machine, two client
  processes each, for ``--seconds``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import multiprocessing
import os
import shutil
import socket
import ssl
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agentstack import Agent, Material, domain
from common import median, table, write_results
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.kit.signing import public_key_to_text
from tests.support import daemons
from tests.support.haproxy import (
    CLIENT_ADDRESS,
    haproxy_argv,
    master_pid,
    reload_haproxy,
    start_dovecot_behind_front,
    start_haproxy,
    stop_haproxy,
    worker_pids,
    write_front_agent_config,
    write_front_stack,
)


def served(port: int, sni: str | None) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(
        raw, server_hostname=sni
    ) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _handshakes(args) -> int:
    port, names, seconds = args
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    deadline, count, i = time.monotonic() + seconds, 0, 0
    while time.monotonic() < deadline:
        raw = socket.socket()
        raw.bind((CLIENT_ADDRESS, 0))
        raw.settimeout(10)
        raw.connect(("127.0.0.1", port))
        with context.wrap_socket(raw, server_hostname=names[i % len(names)]) as tls:
            if not tls.recv(64).startswith(b"* OK"):
                raise RuntimeError("no IMAP greeting")
        count += 1
        i += 1
    return count


def handshake_rate(port: int, names: list[str], seconds: float, clients: int = 2) -> float:
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        counts = pool.map(_handshakes, [(port, names[k::clients], seconds) for k in range(clients)])
    return round(sum(counts) / seconds, 1)


def wait_served(port: int, sni: str, fingerprint: str, timeout: float = 120) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with contextlib.suppress(OSError):
            if served(port, sni) == fingerprint:
                return time.perf_counter() - started
        time.sleep(0.002)
    raise TimeoutError(f"{sni} not served {fingerprint[:12]} on {port} after {timeout} s")


def measure(n: int, changes: int, seconds: float) -> dict:
    print(f"\n== {n} domains behind the HAProxy front", flush=True)
    material = Material()
    server = material.issue(["mx1.host.test"])
    started = time.perf_counter()
    mail = {f"mail.{domain(i)}": material.issue([f"mail.{domain(i)}"]).fingerprint for i in range(n)}
    print(f"   {n} certificates in {time.perf_counter() - started:.1f} s", flush=True)
    desired = {"generation": 1, "server_hostname": "mx1.host.test", "server_certificate": server.fingerprint,
               "webmail_default": server.fingerprint, "mail": mail, "webmail": {}}
    row: dict = {"domains": n}
    key = Ed25519PrivateKey.generate()
    root = daemons.make_root("certpost-bench-front-")
    stack = write_front_stack(root, controller_public_key=public_key_to_text(key.public_key()), direct_imaps=True)
    write_front_agent_config(stack, verify_timeout=300)
    process = daemons.AgentProcess(stack)
    agent = None
    try:
        daemons.bootstrap_agent(stack)
        daemons.start_postfix(stack)
        start_dovecot_behind_front(stack)
        daemons.start_nginx(stack)
        start_haproxy(stack)
        process.start()
        agent = Agent(stack, key)
        full = agent.push(desired, material)
        row["full_apply_s"] = full["wall_s"]
        row["full_timings"] = full["answer"].get("timings")
        print(f"   full apply: {full['status']} {full['wall_s']} s {row['full_timings']}", flush=True)
        if full["status"] != 200:
            row["error"] = full["answer"]
            return row
        port = stack.ports["imaps"]
        probe = f"mail.{domain(n // 2)}"
        # Cold start from the persisted files.
        stop_haproxy(stack)
        started = time.perf_counter()
        daemons._run(haproxy_argv(stack), stack.root / "haproxy-start.log", timeout=600)
        wait_served(port, probe, mail[probe], 300)
        row["start_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        reload_haproxy(stack, timeout=300)
        row["reload_s"] = round(time.perf_counter() - started, 3)
        time.sleep(1)
        master, workers = master_pid(stack), worker_pids(stack)
        row["master_rss_mb"] = round(rss_kb(master) / 1024, 1)
        row["worker_rss_mb"] = round(sum(rss_kb(w) for w in workers) / 1024, 1)
        row["worker_kb_per_domain"] = round(sum(rss_kb(w) for w in workers) / n, 1)
        print(f"   start {row['start_s']} s, reload {row['reload_s']} s, master {row['master_rss_mb']} MB, "
              f"worker {row['worker_rss_mb']} MB ({row['worker_kb_per_domain']} KB/domain)", flush=True)
        # One-domain changes through the runtime API.
        applied = desired
        puts, seen_after_start, seen_after_response = [], [], []
        before = worker_pids(stack)
        for k in range(changes):
            name = f"mail.{domain((k * 7919 + 11) % n)}"
            fp = material.issue([name]).fingerprint
            target = {**applied, "generation": applied["generation"] + 1, "mail": {**applied["mail"], name: fp}}
            # A client polls from the moment the delivery starts: when does it first get the
            # new certificate (the agent answers only after verifying every daemon)?
            # The clock starts when the PUT goes out: the delta is prepared first, as the
            # controller has it ready (agentstack.Agent.push_delta says why that part differs).
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                clock: dict = {}

                def sending(clock=clock, pool=pool, name=name, fp=fp) -> None:
                    clock["started"] = time.perf_counter()
                    clock["seen"] = pool.submit(wait_served, port, name, fp)

                answer = agent.push_delta(applied, target, material, sending)
                responded = time.perf_counter()
                if answer["status"] != 200:
                    row["change_error"] = answer["answer"]
                    break
                started = clock["started"]
                first_seen = started + clock["seen"].result()
            puts.append(answer["wall_s"])
            seen_after_start.append(first_seen - started)
            seen_after_response.append(max(0.0, first_seen - responded))
            applied = target
        row["change_put_s"] = round(median(puts), 3) if puts else None
        row["change_seen_after_put_start_s"] = round(median(seen_after_start), 3) if puts else None
        row["change_seen_after_response_s"] = round(median(seen_after_response), 4) if puts else None
        row["change_timings"] = answer["answer"].get("timings") if puts else None
        row["change_reloaded"] = worker_pids(stack) != before
        print(f"   one-domain change: PUT {row['change_put_s']} s, seen {row['change_seen_after_put_start_s']} s "
              f"after the PUT started, {row['change_seen_after_response_s']} s after its response; "
              f"timings {row['change_timings']}; reloaded: {row['change_reloaded']}", flush=True)
        names = [f"mail.{domain(i)}" for i in range(0, n, max(1, n // 50))]
        row["handshakes_front_per_s"] = handshake_rate(port, names, seconds)
        row["handshakes_dovecot_per_s"] = handshake_rate(stack.ports["imaps_direct"], names, seconds)
        row["front_vs_dovecot"] = round(row["handshakes_front_per_s"] / row["handshakes_dovecot_per_s"], 2)
        print(f"   handshakes/s: front {row['handshakes_front_per_s']}, Dovecot {row['handshakes_dovecot_per_s']} "
              f"({row['front_vs_dovecot']}x)", flush=True)
    finally:
        if agent is not None:
            agent.close()
        process.stop()
        stop_haproxy(stack)
        daemons.stop_daemons(stack)
        if os.environ.get("CERTPOST_KEEP_STACK") != "1":
            shutil.rmtree(root, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="")
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s] or ([200, 1000] if args.quick else [1000, 10000, 50000])
    rows = [measure(n, args.changes, 2 if args.quick else args.seconds) for n in sizes]
    columns = ["domains", "full_apply_s", "start_s", "reload_s", "worker_rss_mb", "worker_kb_per_domain",
                       "change_put_s", "change_seen_after_put_start_s", "change_seen_after_response_s", "change_reloaded",
                       "handshakes_front_per_s", "handshakes_dovecot_per_s", "front_vs_dovecot"]
    print(table(columns, [[row.get(c) for c in columns] for row in rows]))
    write_results("haproxy_front", {"rows": rows})


if __name__ == "__main__":
    main()
