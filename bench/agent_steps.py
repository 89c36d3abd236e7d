"""Where a one-domain change spends its time in the agent, in process, at several sizes.

    .venv/bin/python bench/agent_steps.py [--sizes 1000,10000] [--changes 5] [--profile]

The agent (``app.agent.service.Agent``) runs in this process on the files of a private stack
(tests/support/daemons.py: Postfix and nginx configuration, plus an ``[haproxy]`` front section;
Dovecot left out as in bench/agent_apply.py), but no daemon runs: ``postmap`` and ``nginx -t``
run for real in ``validate``, while reloads, HAProxy's runtime commands (the moves against the
running list are still computed) and the handshakes of the verification (planned, not sent)
are stubbed, so what is
timed is the agent's own work, which is what grows with the number of names. For each size: a
full apply of N domains (each its own EC P-256 certificate for ``mail.<d>`` and ``webmail.<d>``),
(seeded without fsync), then ``--changes`` delta documents, each giving one domain a new certificate, timed as
``put_config`` (the request handler's work after parsing) with the pipeline's step timings and
the rest ("outside": resolve, digest, state, prune). ``--profile`` prints cProfile's top
functions of the changes at each size; ``gc`` is the time the cyclic garbage collector ran
during a change (it is part of the steps it happened in). Benchmarks, not tests: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agentstack import Material, domain
from common import write_results

import app.agent.apply as apply_module
from app.agent.backends.base import Backend
from app.agent.backends.haproxy import HaproxyBackend
from app.agent.backends.haproxy_runtime import CrtListEntry
from app.agent.config import load_config
from app.agent.desired import Desired, DesiredDelta
from app.agent.service import Agent
from tests.support import daemons
from tests.support.ports import free_port


class _Runtime:
    """HAProxy's runtime API, answering every command without a daemon."""

    async def load_cert(self, *args, **kwargs) -> None: ...
    async def add_line(self, *args) -> None: ...
    async def delete_line(self, *args) -> None: ...
    async def delete_cert(self, *args) -> None: ...

    async def crt_list(self, path) -> list[CrtListEntry]:
        return []


def _stub() -> None:
    async def nothing(self, *args, **kwargs):
        return None

    async def no_probes(probes, timeout):
        return [], []  # the probes are planned (verify.plan), not sent

    Backend.reload = nothing
    HaproxyBackend.reload = nothing
    HaproxyBackend.validate = nothing  # haproxy -c runs only when listeners change anyway
    apply_module.run_probes = no_probes


def _stack() -> tuple[daemons.Stack, Path]:
    root = daemons.make_root("certpost-steps-")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app.kit.signing import public_key_to_text

    key = public_key_to_text(Ed25519PrivateKey.generate().public_key())
    stack = daemons.write_stack(root, controller_public_key=key)
    stack.ports.update(imap_proxy=free_port(), pop3_proxy=free_port())
    text = stack.agent_config.read_text().replace("[dovecot]\n", "[dovecot]\nenabled = false\n", 1)
    h = root / "haproxy"
    h.mkdir()
    p = stack.ports
    text += f"""
[haproxy]
directory = "{stack.out("haproxy")}"
main_config = "{h}/haproxy.cfg"
runtime_socket = "{h}/admin.sock"
listeners = [
  {{bind = "127.0.0.1:{p["imaps"]}", server = "127.0.0.1:{p["imap_proxy"]}"}},
  {{bind = "127.0.0.1:{p["pop3s"]}", server = "127.0.0.1:{p["pop3_proxy"]}"}},
]
verify = [{{port = {p["imaps"]}, protocol = "imaps"}}]
"""
    stack.agent_config.write_text(text)
    (h / "haproxy.cfg").write_text("global\n")
    return stack, root


def _bundle(material: Material, fp: str) -> dict:
    return material.bundle(fp)


async def run_size(n: int, changes: int, profile: bool) -> dict:
    stack, root = _stack()
    try:
        agent = Agent(load_config(stack.agent_config))
        haproxy = next(b for b in agent.backends if isinstance(b, HaproxyBackend))
        haproxy.runtime = _Runtime()
        await agent.bootstrap()
        material = Material()
        server = material.issue(["mx1.host.test"])
        mail, webmail = {}, {}
        for i in range(n):
            d = domain(i)
            c = material.issue([f"mail.{d}", f"webmail.{d}"])
            mail[f"mail.{d}"] = webmail[f"webmail.{d}"] = c.fingerprint
        doc = {"generation": 1, "server_hostname": "mx1.host.test",
               "server_certificate": server.fingerprint, "webmail_default": server.fingerprint,
               "mail": mail, "webmail": webmail,
               "bundles": {fp: _bundle(material, fp) for fp in material.certs}}
        # Seeding, not measured: without an fsync per file (10,000 bundles stored, 20,000 copies).
        fsync, os.fsync = os.fsync, lambda fd: None
        started = time.perf_counter()
        try:
            status, result = await agent.put_config(Desired.model_validate(doc))
        finally:
            os.fsync = fsync
        full = time.perf_counter() - started
        assert status == 200, result
        # What HAProxy would hold after loading the files: the running list the moves compare to.
        haproxy._running = {name: CrtListEntry(path, None, (name,))
                            for name, path in haproxy._wanted().items()}
        records = []
        profiler = cProfile.Profile() if profile else None
        gc_time = [0.0, 0.0]  # seconds in the cyclic garbage collector during this change

        def gc_clock(phase, info):
            if phase == "start":
                gc_time[1] = time.perf_counter()
            else:
                gc_time[0] += time.perf_counter() - gc_time[1]

        gc.callbacks.append(gc_clock)
        for k in range(changes):
            d = domain((k * 7919) % n)
            c = material.issue([f"mail.{d}", f"webmail.{d}"])
            delta = DesiredDelta.model_validate({
                "generation": 2 + k, "base_digest": agent.st.applied_digest,
                "server_hostname": "mx1.host.test", "server_certificate": server.fingerprint,
                "webmail_default": server.fingerprint,
                "mail_changes": {f"mail.{d}": c.fingerprint},
                "webmail_changes": {f"webmail.{d}": c.fingerprint},
                "bundles": {c.fingerprint: material.bundle(c.fingerprint)},
            })
            if profiler:
                profiler.enable()
            gc_time[0] = 0.0
            started = time.perf_counter()
            status, result = await agent.put_config(delta)
            wall = time.perf_counter() - started
            if profiler:
                profiler.disable()
            assert status == 200, result
            steps = result["timings"]
            records.append({"wall": wall, **steps, "outside": wall - sum(steps.values()), "gc": gc_time[0]})
        gc.callbacks.remove(gc_clock)
        out = {"n": n, "full_apply_s": round(full, 2),
               "changes": records,
               "median": {k: round(statistics.median(r[k] for r in records), 4) for k in records[0]}}
        if profiler:
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(r"/app/", 40)
            out["profile"] = buf.getvalue()
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="200 and 1,000 names, 3 changes")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.changes = "200,1000", 3
    _stub()
    load = os.getloadavg()
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        record = asyncio.run(run_size(n, args.changes, args.profile))
        results.append(record)
        print(f"\n{n} domains: full apply {record['full_apply_s']} s; one-domain change, median of "
              f"{args.changes} (s): " + ", ".join(f"{k} {v}" for k, v in record["median"].items()))
        if args.profile:
            print(record["profile"])
    print(f"load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    write_results("agent_steps", {"load_before": load, "load_after": os.getloadavg(),
                                  "sizes": [{k: v for k, v in r.items() if k != "profile"} for r in results]})


if __name__ == "__main__":
    main()
