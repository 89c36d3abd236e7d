"""The agent's Prometheus metrics, served on its own listener at ``/metrics`` behind the
``[metrics]`` token (app/kit/metricsendpoint.py; docs/operations.md).

One :class:`AgentMetrics` per :class:`app.agent.service.Agent`, with its own registry (nothing
at import, no global state; tests run several agents in one process). What it measures:

- ``certpost_agent_apply_duration_seconds{outcome}``: each run of the apply pipeline against
  the live daemons (stage to verify, rollback included when it fails);
- ``certpost_agent_step_duration_seconds{step}``: each step of a run (stage, validate, switch,
  reload, verify), so a slow ``nginx -t`` or a slow Dovecot reload shows by itself;
- ``certpost_agent_apply_failures_total{step, daemon}``: runs that failed, by the step and
  daemon that failed them (the controller's ``failed`` deployments, seen from the server);
- ``certpost_agent_applied_generation``, ``certpost_agent_last_apply_timestamp_seconds``,
  ``certpost_agent_held_back_names``: where the agent stands;
- the served-vs-desired drift, set by the periodic re-verification through
  :meth:`AgentMetrics.record_drift_check` (the one setter the drift check calls):
  ``certpost_agent_drift_names{daemon, port}`` (names found serving something other than what
  was applied), ``certpost_agent_drift_checked_names{daemon, port}`` and
  ``certpost_agent_drift_last_check_timestamp_seconds``.

The series are labelled by step, daemon and port only, never by domain: a server holds
thousands of names.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

STEPS = ("stage", "validate", "switch", "reload", "verify")
# Seconds: a no-change apply takes milliseconds, a Dovecot reload at 2,000 names tens of seconds.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.apply_duration = Histogram(
            "certpost_agent_apply_duration_seconds",
            "Runs of the apply pipeline on the live daemons, stage to verify (rollback included).",
            ["outcome"], buckets=DURATION_BUCKETS, registry=r)
        self.step_duration = Histogram(
            "certpost_agent_step_duration_seconds", "Each step of an apply run.", ["step"],
            buckets=DURATION_BUCKETS, registry=r)
        self.failures = Counter(
            "certpost_agent_apply_failures", "Apply runs that failed, by failing step and daemon.",
            ["step", "daemon"], registry=r)
        self.applied_generation = Gauge(
            "certpost_agent_applied_generation", "The generation the agent last applied.", registry=r)
        self.last_apply = Gauge(
            "certpost_agent_last_apply_timestamp_seconds", "When the agent last applied a generation, Unix time.",
            registry=r)
        self.held_back = Gauge(
            "certpost_agent_held_back_names", "Names of the applied generation held back on what they served before.",
            registry=r)
        self.drift = Gauge(
            "certpost_agent_drift_names",
            "Names the last drift check found serving a certificate other than the applied one.",
            ["daemon", "port"], registry=r)
        self.drift_checked = Gauge(
            "certpost_agent_drift_checked_names", "Names the last drift check looked at.", ["daemon", "port"],
            registry=r)
        self.drift_checked_at = Gauge(
            "certpost_agent_drift_last_check_timestamp_seconds", "When the last drift check ran, Unix time.",
            registry=r)

    # -- the apply pipeline (app/agent/apply.py) ---------------------------------------------------
    def record_run(self, seconds: float, timings: dict[str, float], failed: dict | None) -> None:
        """One live run of the pipeline: its total time, its steps' times, and how it failed."""
        self.apply_duration.labels("failed" if failed else "applied").observe(seconds)
        for step, spent in timings.items():
            if step in STEPS:
                self.step_duration.labels(step).observe(spent)
        if failed:
            self.failures.labels(str(failed.get("step") or "unknown"), str(failed.get("daemon") or "unknown")).inc()

    # -- the agent's state (app/agent/service.py) --------------------------------------------------
    def record_applied(self, generation: int, held_back: int, at: float | None = None) -> None:
        self.applied_generation.set(generation)
        self.held_back.set(held_back)
        self.last_apply.set(time.time() if at is None else at)

    # -- the drift check -----------------------------------------------------------------------------
    def record_drift_check(self, *, daemon: str, port: int, checked: int, drifted: int,
                           at: float | None = None) -> None:
        """What one periodic re-verification of one port found: ``checked`` names handshaken,
        ``drifted`` of them serving something other than the applied certificate. The drift
        check (issue 10) calls this once per port per round; ``at`` defaults to now."""
        self.drift.labels(daemon, str(port)).set(drifted)
        self.drift_checked.labels(daemon, str(port)).set(checked)
        self.drift_checked_at.set(time.time() if at is None else at)

    def render(self) -> bytes:
        return generate_latest(self.registry)
