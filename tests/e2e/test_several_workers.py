"""Two `certpost worker` processes on PostgreSQL, three real agents with nginx, one certificate
bound on all three: each generation is applied exactly once and every agent converges.

Everything runs as operators run it (tests/support/fleet.py): `certpost serve` with
CERTPOST_RUN_WORKER=false, two `certpost worker`, `certpost agent --config FILE` per server. It
creates and drops a database of its own on the PostgreSQL server the PostgreSQL run uses
(127.0.0.1:5432), so it runs in that run only (CERTPOST_TEST_DB=postgres).
"""

from __future__ import annotations

import os

import pytest

from tests.support.fleet import pg_reachable, running_fleet

pytestmark = [
    pytest.mark.daemons,
    pytest.mark.skipif(os.environ.get("CERTPOST_TEST_DB") != "postgres" or not pg_reachable(),
                       reason="the PostgreSQL run only (several workers need PostgreSQL)"),
]

SERVERS, CHANGES = 3, 3


def test_two_workers_apply_each_generation_once():
    with running_fleet(SERVERS) as fleet:
        assert "certpost.worker: worker " not in fleet.serve.log_text(), \
            "CERTPOST_RUN_WORKER=false must keep the worker out of certpost serve"
        workers = fleet.start_workers(2)
        fleet.wait_served(fleet.fingerprint, 0.0, timeout=30)
        fleet.wait_applied(timeout=30)
        for _ in range(CHANGES):
            fingerprint, answered = fleet.replace()
            assert len(fleet.wait_served(fingerprint, answered, timeout=20)) == SERVERS  # all converge
            fleet.wait_applied(timeout=20)
        assert all(w.process.poll() is None for w in workers)
        audit = fleet.audit()
        assert audit["ok"], audit
        # The first state (the registrations and bindings, superseded into one generation, as no
        # worker ran yet) and each replacement: once per server in the database and in the agent.
        assert audit["db_deployments_applied"] == SERVERS * (1 + CHANGES), audit
        assert audit["agent_applies"] == SERVERS * (1 + CHANGES), audit
        assert sum(audit["lease_claims_by_pid"].values()) >= SERVERS * (1 + CHANGES), audit
