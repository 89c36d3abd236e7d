"""Several `certpost worker` processes on PostgreSQL delivering one change to 20 real agents.

    .venv/bin/python bench/workers.py [--quick] [--servers 20] [--changes 3] [--keep]

A fresh database on the PostgreSQL server at 127.0.0.1:5432 (CERTPOST_TEST_PG_URL), created and
dropped here; `certpost serve` with CERTPOST_RUN_WORKER=false; 20 × `certpost agent --config FILE`,
each with its own nginx (workers as www-data); one platform certificate bound to webmail of one
domain on each server (tests/support/fleet.py). For 1, 2 and 4 `certpost worker` processes, and as
the anchor for the same run `certpost serve` with its embedded worker (woken by the API's commit),
the certificate's material is replaced through the API (`PUT /v1/certificates/{id}`) ``--changes``
times; each time the clock runs from the API's response until every nginx serves the new
certificate, seen by a TLS handshake with SNI every 20 ms per server.

Per phase it reports the median over the changes of "all served" (and of the first server and
the per-server median), each worker's claims (its log lines), and the proof that nothing was
applied twice (Fleet.audit: database attempts, a lease-owner trigger, each agent's log).
--quick: 6 servers, 1 change per phase. Raw results: bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta

import common
from common import table, write_results

from tests.support.fleet import pg_reachable, running_fleet


def uptime() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


POLL = 1.0  # CERTPOST_WORKER_POLL_SECONDS, the default


def one_change(fleet) -> dict:
    """Replace the certificate; seconds until each server serves it, and the CPU it took."""
    before = fleet.cpu_seconds()
    fingerprint, answered = fleet.replace()
    wall = datetime.now() - timedelta(seconds=time.perf_counter() - answered)
    seconds = fleet.wait_served(fingerprint, answered)
    fleet.wait_applied()
    after = fleet.cpu_seconds()
    claims = fleet.claim_times(wall)
    return {"all": max(seconds), "first": min(seconds), "median": statistics.median(seconds),
            "first_claim": (claims[0] - wall).total_seconds() if claims else None,
            "per_server": [round(x, 4) for x in seconds],
            "cpu": {k: round(after[k] - before[k], 2) for k in after}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--servers", type=int)
    parser.add_argument("--changes", type=int)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--keep", action="store_true", help="keep the stacks' directory (logs)")
    args = parser.parse_args()
    servers = args.servers or (6 if args.quick else 20)
    changes = args.changes or (1 if args.quick else 3)
    if not pg_reachable():
        print("bench/workers.py: no PostgreSQL on 127.0.0.1:5432; skipped")
        return 0
    phases: list[dict] = []
    load_before = uptime()
    started = time.perf_counter()
    with running_fleet(servers, keep=args.keep) as fleet:
        setup = time.perf_counter() - started
        print(f"{servers} agents + nginx, serve, database up in {setup:.1f} s; load {uptime()}", flush=True)
        plan = [("embedded", 0)] + [(f"{n} worker{'s' if n > 1 else ''}", n) for n in map(int, args.workers.split(","))]
        runs: dict[str, list[dict]] = {label: [] for label, _ in plan}
        claims: dict[str, dict[str, int]] = {label: {} for label, _ in plan}
        audits: dict[str, list[bool]] = {label: [] for label, _ in plan}
        loads: dict[str, list[str]] = {label: [] for label, _ in plan}
        # Every configuration stays up for the whole run, the idle ones paused (SIGSTOP), so each
        # change meets warm processes as in steady operation, and the configurations alternate.
        fleet.start_embedded()
        fleet.wait_applied(timeout=120)  # the first deliveries, by the embedded worker
        fleet.use(fleet.serve)
        groups = {count: fleet.start_workers(count, label=f"n{count}-") for _label, count in plan if count}
        for group in groups.values():
            fleet.pause(group)

        rng = random.Random(8)

        def run(label: str, count: int, measured: bool, round_no: int) -> None:
            since = datetime.now()
            if count:
                fleet.pause(groups[count], False, stagger=POLL, rng=rng)
            else:
                fleet.use(fleet.embedded)
            time.sleep(1.2)  # past every resumed worker's first poll
            result = one_change(fleet)
            if count:
                fleet.pause(groups[count])
            else:
                fleet.use(fleet.serve)
            audit = fleet.audit(since)
            audits[label].append(audit["ok"])
            active = {k: v for k, v in audit["claims_per_worker"].items() if v}
            print(f"{'round ' + str(round_no) if measured else 'warm-up'} {label}: all served {result['all']:.3f} s, "
                  f"first claim {result['first_claim']}, cpu {result['cpu']}, claims {active}, ok={audit['ok']}, load {uptime()}", flush=True)
            if not measured:
                return
            loads[label].append(uptime())
            for name, n in active.items():
                key = name.split("-", 1)[-1]
                claims[label][key] = claims[label].get(key, 0) + n
            runs[label].append(result)

        for label, count in plan:
            run(label, count, False, 0)
        for round_no in range(changes):
            # Side by side: every configuration once per round, the order rotated each round.
            order = plan[round_no % len(plan):] + plan[:round_no % len(plan)]
            for label, count in order:
                run(label, count, True, round_no + 1)
        for label, count in plan:
            rs = runs[label]
            phases.append({
                "phase": label, "workers": count, "load": loads[label],
                "all_served_median": statistics.median(r["all"] for r in rs),
                "first_served_median": statistics.median(r["first"] for r in rs),
                "server_median": statistics.median(r["median"] for r in rs),
                "first_claim_median": statistics.median(r["first_claim"] for r in rs if r["first_claim"] is not None),
                "cpu_median": {k: statistics.median(r["cpu"][k] for r in rs) for k in rs[0]["cpu"]},
                "claims": claims[label], "ok": all(audits[label]), "runs": rs,
            })
        final = fleet.audit()
    anchor = phases[0]["all_served_median"]
    one = next((p["all_served_median"] for p in phases if p["workers"] == 1), None)
    rows = []
    for p in phases:
        cpu = p["cpu_median"]
        rows.append([p["phase"], p["first_claim_median"], p["all_served_median"], p["first_served_median"], p["server_median"],
                     p["all_served_median"] / anchor, p["all_served_median"] / one if one else None,
                     f"{cpu['serve'] + cpu['workers']:.2f} / {cpu['agents']:.2f} / {cpu['nginx']:.2f}",
                     " ".join(f"{v}" for v in sorted(p["claims"].values(), reverse=True)),
                     "yes" if p["ok"] else "NO", p["load"][-1]])
    print()
    print(f"PUT /v1/certificates/{{id}} response → all {servers} nginx serve the new certificate "
          f"(TLS handshake with SNI every 20 ms), median of {changes}; PostgreSQL; load before {load_before}")
    print(table(["workers", "first claim s", "all served s", "first s", "per-server median s", "÷ embedded", "÷ 1 worker",
                 "CPU s controller / agents / nginx", "claims per worker", "applied once", "load 1/5/15"], rows))
    print(f"\nwhole run: {final['db_deployments_applied']} deployments applied (database), "
          f"{final['agent_applies']} applies in the agents' logs, twice: database {final['db_applied_twice']}, "
          f"agents {final['agent_generations_applied_twice']}; lease taken while held: {final['lease_overlaps_db']}")
    path = write_results("workers", {"servers": servers, "changes": changes, "load_before": load_before,
                                     "setup_seconds": setup, "phases": phases, "final_audit": final})
    print(f"results: {path}")
    return 0 if final["ok"] and all(p["ok"] for p in phases) else 1


if __name__ == "__main__":
    assert common  # puts the repository on sys.path
    sys.exit(main())
