"""Agent apply against real Postfix, Dovecot and nginx: full apply, no-op, one-domain change.

    .venv/bin/python bench/agent_apply.py [--quick] [--sizes 1000,10000]

For each case: N domains, each with its own certificate (EC P-256, names mail.<d> and
webmail.<d>, one intermediate), bound to mail.<d> (Postfix SNI map, and Dovecot when the case
includes it) and webmail.<d> (nginx map). Measured:

* full apply: wall time of PUT /v1/config from a freshly bootstrapped agent (receive and check
  every bundle, render, stage, postmap, validate, switch, reload, verify by handshake), the
  agent's own ``timings`` and the request bytes;
* no-op: the same document under a new generation (nothing changes on disk, nothing reloads);
* one-domain change: one domain gets a new certificate; only that bundle is sent, in a delta
  document (docs/agent.md; ``--full-documents`` sends the whole document instead) (median of 3);
* bare: the daemons' own commands on the same live files, right afterwards: ``postmap -F`` of a
  copy of all SNI shards in one table and of the largest shard, ``nginx -t``, ``nginx -s reload``, and with Dovecot ``doveconf -x -n``
  and ``doveadm reload`` (both return before the reload has finished; see docs/performance.md).

With 10,000 names Dovecot is left out of the agent's configuration: 10,000 ``local_name`` blocks
do not start or reload in Dovecot 2.3 (real-servers.md); bench/dovecot_capacity.py measures
where it stops.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agentstack import Material, bench_stack, domain, nginx_argv, postfix_map_type
from common import human_bytes, median, table, timed_run, write_results

CHANGES = 3


def make_desired(n: int, material: Material) -> tuple[dict, float]:
    started = time.perf_counter()
    server = material.issue(["mx1.host.test"])
    mail, webmail = {}, {}
    for i in range(n):
        d = domain(i)
        c = material.issue([f"mail.{d}", f"webmail.{d}"])
        mail[f"mail.{d}"] = c.fingerprint
        webmail[f"webmail.{d}"] = c.fingerprint
    desired = {"generation": 1, "server_hostname": "mx1.host.test",
               "server_certificate": server.fingerprint, "webmail_default": server.fingerprint,
               "mail": mail, "webmail": webmail}
    for fp in list(material.certs):  # materialize PEM once, outside any timing
        material.bundle(fp)
    return desired, time.perf_counter() - started


def bare_commands(stack, with_dovecot: bool, reps: int = 3) -> dict:
    out: dict[str, float] = {}
    map_type = postfix_map_type(stack)
    shards = sorted(stack.out("postfix").glob("sni.??"))
    largest = max(shards, key=lambda p: p.stat().st_size)
    copy = largest.with_name(".bench-sni")
    # every name in one table (what each change rebuilt before the shards), then the largest
    # shard (what a one-name change rebuilds now)
    sources = {f"postmap -F {map_type}": b"".join(p.read_bytes() for p in shards),
               f"postmap -F {map_type} (largest of {len(shards)} shards)": largest.read_bytes()}
    try:
        for label, content in sources.items():
            copy.write_bytes(content)
            times = []
            for _ in range(reps):
                t, rc, err = timed_run(["postmap", "-c", str(stack.postfix_dir / "etc"), "-F",
                                        f"{map_type}:{copy}"], umask=0o077)
                if rc != 0:
                    raise RuntimeError(f"postmap failed: {err}")
                times.append(t)
            out[label] = median(times)
    finally:
        for p in copy.parent.glob(".bench-sni*"):
            p.unlink()
    times = []
    for _ in range(reps):
        t, rc, err = timed_run(nginx_argv(stack, "-t", "-q"))
        if rc != 0:
            raise RuntimeError(f"nginx -t failed: {err}")
        times.append(t)
    out["nginx -t"] = median(times)
    times = []
    for _ in range(reps):
        t, rc, err = timed_run(nginx_argv(stack, "-s", "reload"))
        if rc != 0:
            raise RuntimeError(f"nginx -s reload failed: {err}")
        times.append(t)
        time.sleep(0.5)
    out["nginx -s reload"] = median(times)
    if with_dovecot:
        times = []
        for _ in range(reps):
            t, rc, err = timed_run(["doveconf", "-x", "-n", "-c", str(stack.dovecot_conf)])
            if rc != 0:
                raise RuntimeError(f"doveconf failed: {err}")
            times.append(t)
        out["doveconf -x -n"] = median(times)
        times = []
        for _ in range(reps):
            t, rc, err = timed_run(["doveadm", "-c", str(stack.dovecot_conf), "reload"])
            times.append(t)
            time.sleep(2)
        out["doveadm reload"] = median(times)
    return out


def run_case(n: int, with_dovecot: bool, delta: bool = True) -> dict:
    label = f"{n} domains, {'Postfix+Dovecot+nginx' if with_dovecot else 'Postfix+nginx'}"
    print(f"\n== {label}", flush=True)
    material = Material()
    desired, gen_s = make_desired(n, material)
    print(f"   generated {n + 1} certificates in {gen_s:.1f} s", flush=True)
    case: dict = {"domains": n, "dovecot": with_dovecot, "generate_s": round(gen_s, 2),
                  "change_document": "delta" if delta else "full"}
    with bench_stack(dovecot=with_dovecot) as (stack, agent, _process):
        full = agent.push(desired, material)
        print(f"   full apply: {full['status']} {full['wall_s']} s, {human_bytes(full['bytes_sent'])}",
              flush=True)
        case["full"] = _slim(full)
        if full["status"] != 200:
            case["error"] = full["answer"]
            return case
        generation = 2
        noop = agent.push({**desired, "generation": generation}, material)
        case["noop"] = _slim(noop)
        changes = []
        for k in range(CHANGES):
            generation += 1
            time.sleep(1.1)  # smtpd compares table times to the second
            d = domain((k * 7919) % n)
            c = material.issue([f"mail.{d}", f"webmail.{d}"])
            applied = desired
            desired = {**desired, "generation": generation,
                       "mail": {**desired["mail"], f"mail.{d}": c.fingerprint},
                       "webmail": {**desired["webmail"], f"webmail.{d}": c.fingerprint}}
            r = agent.push_delta(applied, desired, material) if delta else agent.push(desired, material)
            print(f"   one-domain change: {r['status']} {r['wall_s']} s, {r['bytes_sent']} B, "
                  f"{r['bundles_sent']} bundle", flush=True)
            changes.append(_slim(r))
        case["changes"] = changes
        case["change_median_s"] = median([c["wall_s"] for c in changes])
        case["bare"] = bare_commands(stack, with_dovecot)
        sni = stack.out("postfix")
        case["postfix_map_bytes"] = sum(p.stat().st_size for p in sni.glob("sni.*"))
        case["nginx_conf_bytes"] = (stack.out("nginx") / "certpost.conf").stat().st_size
        if with_dovecot:
            case["dovecot_conf_bytes"] = (stack.out("dovecot") / "certpost.conf").stat().st_size
    return case


def _slim(record: dict) -> dict:
    answer = record["answer"]
    out = {k: record[k] for k in ("wall_s", "bytes_sent", "bundle_bytes", "bundles_sent", "status")}
    if isinstance(answer, dict):
        out["timings"] = answer.get("timings")
        out["changed"] = answer.get("changed")
        out["verified_probes"] = len(answer.get("verified") or [])
        if record["status"] != 200:
            out["error"] = answer
    return out


def report(cases: list[dict]) -> str:
    rows = []
    for c in cases:
        if "changes" not in c:
            rows.append([c["domains"], "all" if c["dovecot"] else "no Dovecot", "FAILED", "", "", "", ""])
            continue
        t = c["full"]["timings"] or {}
        rows.append([
            c["domains"], "all three" if c["dovecot"] else "Postfix+nginx",
            c["full"]["wall_s"], human_bytes(c["full"]["bytes_sent"]),
            " ".join(f"{k}={v}" for k, v in t.items()),
            c["noop"]["wall_s"], c["change_median_s"],
        ])
    out = [table(["domains", "daemons", "full apply s", "full bytes", "agent timings (full)",
                  "no-op s", "1-domain change s (median)"], rows)]
    rows = []
    for c in cases:
        if "changes" not in c:
            continue
        ch = c["changes"][len(c["changes"]) // 2]
        bare = c["bare"]
        postmap = next(v for k, v in bare.items() if k.startswith("postmap"))
        shard = next((v for k, v in bare.items() if "shards" in k), None)
        rows.append([
            c["domains"], "all three" if c["dovecot"] else "Postfix+nginx",
            f"{human_bytes(ch['bytes_sent'])} ({ch['bundles_sent']} bundle, {ch['bundle_bytes']} B)",
            postmap, shard, bare["nginx -t"], bare["nginx -s reload"],
            bare.get("doveconf -x -n"), bare.get("doveadm reload"),
            round(c["full"]["wall_s"] / postmap, 1), round(c["change_median_s"] / postmap, 1),
        ])
    out.append(table(["domains", "daemons", "change sent", "bare postmap s (all names)",
                      "bare postmap s (largest shard)", "bare nginx -t s",
                      "bare nginx reload s", "bare doveconf -x -n s", "bare doveadm reload s",
                      "full / postmap", "change / postmap"], rows))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 domains only")
    parser.add_argument("--sizes", help="comma-separated N for the Postfix+nginx cases")
    parser.add_argument("--full-documents", action="store_true",
                        help="send one-domain changes as full documents instead of deltas")
    args = parser.parse_args()
    if args.sizes:
        plan = [(int(n), False) for n in args.sizes.split(",")]
    elif args.quick:
        plan = [(100, True), (1000, False)]
    else:
        plan = [(1000, True), (1000, False), (10000, False)]
    cases = []
    for n, with_dovecot in plan:
        cases.append(run_case(n, with_dovecot, delta=not args.full_documents))
        write_results("agent_apply", {"quick": args.quick, "cases": cases})
    print("\n" + report(cases))
    path = write_results("agent_apply", {"quick": args.quick, "cases": cases})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
