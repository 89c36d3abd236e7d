"""A rough measurement, printed, not asserted: one wildcard issuance, then 20 in parallel threads.

Benchmarks proper live in bench/; this only shows the order of magnitude on every test run.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.acme import issue

pytestmark = pytest.mark.acme

PARALLEL = 20


def test_measure_wildcard_issuance(pebble_server, acme_account, dns_solver, txt_at, capsys):
    client, _, _ = acme_account

    started = time.perf_counter()
    issue(client, ["z01.test", "*.z01.test"], "ec-p256", dns_solver, poll_interval=0.05, timeout=60)
    single = time.perf_counter() - started

    def one(i: int) -> float:
        t0 = time.perf_counter()
        zone = f"z{i:02d}.test"
        issue(client, [zone, f"*.{zone}"], "ec-p256", dns_solver, poll_interval=0.05, timeout=60)
        return time.perf_counter() - t0

    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        durations = sorted(pool.map(one, range(1, PARALLEL + 1)))
    wall = time.perf_counter() - started

    for i in range(1, PARALLEL + 1):
        assert txt_at(f"_acme-challenge.z{i:02d}.test") == set()
    with capsys.disabled():
        print(
            f"\n[acme measure] one wildcard (dns-01, rfc2136): {single * 1000:.0f} ms; "
            f"{PARALLEL} in parallel threads, one shared account: wall {wall:.2f} s, "
            f"median {durations[len(durations) // 2] * 1000:.0f} ms, max {durations[-1] * 1000:.0f} ms"
        )
