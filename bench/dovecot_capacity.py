"""Dovecot capacity: how many per-domain mail certificates (one ``local_name`` block each) a
server can carry while an agent apply stays under a time limit (default 5 s).

    .venv/bin/python bench/dovecot_capacity.py [--quick] [--sizes 100,250,...] [--limit 5]

For each N (fresh stack each time): N domains, each with its own certificate bound to
mail.<d> only (Postfix SNI map + Dovecot local_name blocks; nginx unchanged). Measured:
the full apply from a bootstrapped agent, then one-domain changes (a new certificate for one
domain: Postfix map rebuilt, Dovecot re-reads all N blocks on reload, the agent verifies by
handshake), and bare ``doveconf -x -n`` / ``doveadm reload`` on the same files.

The capacity is the largest N whose one-domain change (the steady state: every renewal is one)
stays under the limit; the first, full apply is reported next to it. Sizes are tried in order
and the run stops at the first N over the limit, then tries one size half-way back.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agentstack import Material, bench_stack, domain
from common import median, pids_of_children, rss_mb, table, timed_run, write_results

CHANGES = 2


def measure(n: int) -> dict:
    print(f"\n== {n} Dovecot local_name blocks", flush=True)
    material = Material()
    server = material.issue(["mx1.host.test"])
    mail = {}
    for i in range(n):
        d = domain(i)
        mail[f"mail.{d}"] = material.issue([f"mail.{d}"]).fingerprint
    desired = {"generation": 1, "server_hostname": "mx1.host.test",
               "server_certificate": server.fingerprint, "webmail_default": server.fingerprint,
               "mail": mail, "webmail": {}}
    for fp in list(material.certs):
        material.bundle(fp)
    row: dict = {"blocks": n}
    with bench_stack(dovecot=True, verify_timeout=120) as (stack, agent, _process):
        full = agent.push(desired, material)
        row["full_s"] = full["wall_s"]
        row["full_status"] = full["status"]
        row["full_timings"] = full["answer"].get("timings") if isinstance(full["answer"], dict) else None
        print(f"   full apply: {full['status']} {full['wall_s']} s {row['full_timings']}", flush=True)
        if full["status"] != 200:
            row["error"] = full["answer"]
            return row
        changes = []
        for k in range(CHANGES):
            time.sleep(1.1)
            d = domain((k * 7919) % n)
            fp = material.issue([f"mail.{d}"]).fingerprint
            desired = {**desired, "generation": desired["generation"] + 1,
                       "mail": {**desired["mail"], f"mail.{d}": fp}}
            r = agent.push(desired, material)
            timings = r["answer"].get("timings") if isinstance(r["answer"], dict) else None
            print(f"   one-domain change: {r['status']} {r['wall_s']} s {timings}", flush=True)
            changes.append({"wall_s": r["wall_s"], "status": r["status"], "timings": timings,
                            "bytes_sent": r["bytes_sent"]})
            if r["status"] != 200:
                row["error"] = r["answer"]
                break
        row["changes"] = changes
        row["change_s"] = median([c["wall_s"] for c in changes])
        row["change_timings"] = changes[-1]["timings"]
        master = stack.dovecot_conf.parent / "run" / "master.pid"
        row["dovecot_rss_mb"] = rss_mb(pids_of_children(int(master.read_text().split()[0])))
        t, rc, _ = timed_run(["doveconf", "-x", "-n", "-c", str(stack.dovecot_conf)])
        row["bare_doveconf_s"] = round(t, 3) if rc == 0 else None
        t, rc, _ = timed_run(["doveadm", "-c", str(stack.dovecot_conf), "reload"])
        row["bare_doveadm_reload_s"] = round(t, 3)
        row["conf_bytes"] = (stack.out("dovecot") / "certpost.conf").stat().st_size
    return row


def ok(row: dict, limit: float) -> bool:
    return "error" not in row and row.get("change_s", 1e9) < limit


def report(rows: list[dict], limit: float) -> str:
    out = []
    for r in sorted(rows, key=lambda r: r["blocks"]):
        ct = r.get("change_timings") or {}
        out.append([r["blocks"], r.get("full_s"), r.get("change_s"),
                    ct.get("validate"), ct.get("reload"), ct.get("verify"),
                    r.get("bare_doveconf_s"), r.get("bare_doveadm_reload_s"),
                    r.get("dovecot_rss_mb"),
                    "yes" if ok(r, limit) else ("FAILED" if "error" in r else "no")])
    return table(["blocks", "full apply s", "1-domain change s", "change: validate s",
                  "change: reload s", "change: verify s", "bare doveconf -x -n s",
                  "bare doveadm reload s", "Dovecot RSS MB", f"change < {limit:g} s"], out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100, 250 and 500 only")
    parser.add_argument("--sizes", help="comma-separated block counts, ascending")
    parser.add_argument("--limit", type=float, default=5.0, help="seconds (default 5)")
    args = parser.parse_args()
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else [100, 250, 500] if args.quick else [100, 250, 500, 1000, 2000, 3000, 4000])
    rows: list[dict] = []
    last_ok = 0
    for n in sizes:
        row = measure(n)
        rows.append(row)
        write_results("dovecot_capacity", {"limit_s": args.limit, "rows": rows})
        if not ok(row, args.limit):
            mid = int(round((last_ok + n) / 2 / 250) * 250)
            if not args.quick and last_ok and last_ok < mid < n:
                row = measure(mid)
                rows.append(row)
                if ok(row, args.limit):
                    last_ok = mid
            break
        last_ok = n
    print("\n" + report(rows, args.limit))
    print(f"\nlargest N with a one-domain change under {args.limit:g} s: {last_ok} "
          f"(largest tried: {max(r['blocks'] for r in rows)})")
    path = write_results("dovecot_capacity", {"limit_s": args.limit, "rows": rows,
                                              "capacity": last_ok, "quick": args.quick})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
