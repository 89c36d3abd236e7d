"""Two `certpost worker` processes on PostgreSQL, three real agents with nginx, one certificate
bound on all three: each generation is applied exactly once and every agent converges.

Everything runs as operators run it (tests/support/fleet.py): `certpost serve` with
CERTPOST_RUN_WORKER=false, two `certpost worker`, `certpost agent --config FILE` per server.
It needs the PostgreSQL server the PostgreSQL tests use (127.0.0.1:5432), whichever backend the
rest of the run uses; it creates and drops a database of its own.
"""

from __future__ import annotations

import pytest

from tests.support.fleet import pg_reachable, running_fleet

pytestmark = [
    pytest.mark.daemons,
    pytest.mark.skipif(not pg_reachable(), reason="needs the PostgreSQL server on 127.0.0.1:5432"),
]


def test_two_workers_apply_each_generation_once():
    with running_fleet(3) as fleet:
        assert "certpost.worker: worker " not in fleet.serve.log_text(), \
            "CERTPOST_RUN_WORKER=false must keep the worker out of certpost serve"
        fleet.start_workers(2)
        fleet.wait_served(fleet.fingerprint, 0.0, timeout=30)
        fleet.wait_applied(timeout=30)
        for _ in range(3):
            fingerprint, answered = fleet.replace()
            seconds = fleet.wait_served(fingerprint, answered, timeout=20)
            assert len(seconds) == 3
            fleet.wait_applied(timeout=20)
        audit = fleet.audit()
        assert audit["ok"], audit
        # the initial generation and three replacements, once each on every server
        assert audit["db_deployments_applied"] >= 3 * 4 - 3 * 0 - 6, audit
        assert audit["agent_applies"] == audit["db_deployments_applied"], audit
        assert sum(audit["claims_per_worker"].values()) >= 3 * 3, audit
