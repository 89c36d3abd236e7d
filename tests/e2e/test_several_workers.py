"""Two `certpost worker` processes on PostgreSQL, three real agents with nginx, one certificate
bound on all three: each generation is applied exactly once and every agent converges, also when
a worker stalls mid-delivery past its lease and then wakes up.

Everything runs as operators run it (tests/support/fleet.py): `certpost serve` with
CERTPOST_RUN_WORKER=false, two `certpost worker`, `certpost agent --config FILE` per server. It
creates and drops a database of its own on the PostgreSQL server the PostgreSQL run uses
(127.0.0.1:5432), so it runs in that run only (CERTPOST_TEST_DB=postgres).
"""

from __future__ import annotations

import os
import time

import pytest

from tests.support.fleet import pg_reachable, running_fleet
from tests.support.logs import has_line

pytestmark = [
    pytest.mark.daemons,
    pytest.mark.skipif(os.environ.get("CERTPOST_TEST_DB") != "postgres" or not pg_reachable(),
                       reason="the PostgreSQL run only (several workers need PostgreSQL)"),
]

SERVERS, CHANGES = 3, 3
LEASE = 3.0  # seconds: short, so that a stalled worker's lease runs out within the test


@pytest.fixture(scope="module")
def fleet():
    with running_fleet(SERVERS, lease_seconds=LEASE) as fleet:
        assert not has_line(fleet.serve.log_text(), "certpost.worker", "worker "), \
            "CERTPOST_RUN_WORKER=false must keep the worker out of certpost serve"
        fleet.start_workers(2)
        fleet.wait_served(fleet.fingerprint, 0.0, timeout=30)
        fleet.wait_applied(timeout=30)
        yield fleet


def test_two_workers_apply_each_generation_once(fleet):
    for _ in range(CHANGES):
        fingerprint, answered = fleet.replace()
        assert len(fleet.wait_served(fingerprint, answered, timeout=20)) == SERVERS  # all converge
        fleet.wait_applied(timeout=20)
    assert all(w.process.poll() is None for w in fleet.workers)
    audit = fleet.audit()
    assert audit["ok"], audit
    # The first state (the registrations and bindings, superseded into one generation, as no
    # worker ran yet) and each replacement: once per server in the database and in the agent.
    assert audit["db_deployments_applied"] == SERVERS * (1 + CHANGES), audit
    assert audit["agent_applies"] == SERVERS * (1 + CHANGES), audit
    assert sum(audit["lease_claims_by_pid"].values()) >= SERVERS * (1 + CHANGES), audit


def test_a_worker_stalled_past_its_lease_applies_nothing_twice(fleet):
    """Worker A claims, is frozen (SIGSTOP) mid-delivery until its lease runs out; B takes the
    servers over and delivers; A wakes up and must neither apply nor record anything again."""
    a, b = fleet.workers
    applied_before = fleet.audit()["db_deployments_applied"]
    fleet.pause([b])
    claims_before = a.log.read_text().count("claimed server")
    b_claims_before = b.log.read_text().count("claimed server")
    fingerprint, answered = fleet.replace()
    deadline = time.monotonic() + 10
    while a.log.read_text().count("claimed server") == claims_before:
        assert time.monotonic() < deadline, "worker A claimed nothing"
        time.sleep(0.005)
    fleet.pause([a])  # mid-delivery: the push may or may not have reached some agents
    fleet.pause([b], False)
    try:
        assert len(fleet.wait_served(fingerprint, answered, timeout=30)) == SERVERS
        fleet.wait_applied(timeout=30)
    finally:
        fleet.pause([a], False)
    time.sleep(LEASE)  # A's tasks run on: its heartbeat finds the lease taken, its record is refused
    assert b.log.read_text().count("claimed server") > b_claims_before, "B took nothing over"
    audit = fleet.audit()
    assert audit["ok"], audit
    assert audit["db_deployments_applied"] == applied_before + SERVERS, audit
    assert audit["agent_applies"] == applied_before + SERVERS, audit
    assert all(w.process.poll() is None for w in fleet.workers)
