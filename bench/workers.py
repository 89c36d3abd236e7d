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
import statistics
import sys
import time
from datetime import datetime

import common
from common import fmt, table, write_results

from tests.support.fleet import pg_reachable, running_fleet


def uptime() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(fleet, changes: int) -> dict:
    runs = []
    for _ in range(changes):
        fingerprint, answered = fleet.replace()
        seconds = fleet.wait_served(fingerprint, answered)
        fleet.wait_applied()
        runs.append({"all": max(seconds), "first": min(seconds), "median": statistics.median(seconds),
                     "per_server": [round(s, 4) for s in seconds]})
        time.sleep(0.3)
    return {
        "all_served_median": statistics.median(r["all"] for r in runs),
        "first_served_median": statistics.median(r["first"] for r in runs),
        "server_median": statistics.median(r["median"] for r in runs),
        "runs": runs,
    }


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
        for label, count in plan:
            since = datetime.now()
            if count == 0:
                fleet.restart_serve(run_worker=True)
            else:
                fleet.start_workers(count, label=f"n{count}-")
            fleet.wait_served(fleet.fingerprint, time.perf_counter(), timeout=120)  # the previous state
            fleet.wait_applied(timeout=120)
            result = measure(fleet, changes)
            if count == 0:
                fleet.restart_serve(run_worker=False)
            else:
                fleet.stop_workers()
            audit = fleet.audit(since)
            audit["claims_per_worker"] = {k: v for k, v in audit["claims_per_worker"].items() if v}
            phases.append({"phase": label, "workers": count, "load": uptime(), **result, "audit": audit})
            print(f"{label}: all served {result['all_served_median']:.3f} s (median of {changes}); "
                  f"claims {audit['claims_per_worker']}; ok={audit['ok']}; load {uptime()}", flush=True)
        final = fleet.audit()
    anchor = phases[0]["all_served_median"]
    one = next((p["all_served_median"] for p in phases if p["workers"] == 1), None)
    rows = []
    for p in phases:
        a = p["audit"]
        rows.append([p["phase"], p["all_served_median"], p["first_served_median"], p["server_median"],
                     p["all_served_median"] / anchor, p["all_served_median"] / one if one else None,
                     " ".join(f"{v}" for v in a["claims_per_worker"].values()), "yes" if a["ok"] else "NO", p["load"]])
    print()
    print(f"PUT /v1/certificates/{{id}} response → all {servers} nginx serve the new certificate "
          f"(TLS handshake with SNI every 20 ms), median of {changes}; PostgreSQL; load before {load_before}")
    print(table(["workers", "all served s", "first s", "per-server median s", "÷ embedded", "÷ 1 worker",
                 "claims per worker", "applied once", "load 1/5/15"], rows))
    print(f"\nwhole run: {final['db_deployments_applied']} deployments applied (database), "
          f"{final['agent_applies']} applies in the agents' logs, twice: database {final['db_applied_twice']}, "
          f"agents {final['agent_generations_applied_twice']}; lease taken while held: {final['lease_overlaps_db']}")
    path = write_results("workers", {"servers": servers, "changes": changes, "load_before": load_before,
                                     "setup_seconds": setup, "phases": phases, "final_audit": final})
    print(f"results: {path}")
    return 0 if final["ok"] and all(p["audit"]["ok"] for p in phases) else 1


if __name__ == "__main__":
    assert common  # puts the repository on sys.path
    sys.exit(main())
