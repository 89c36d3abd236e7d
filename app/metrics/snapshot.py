"""What the database says at one moment (:class:`Snapshot`), and its Prometheus families (pure).

Cardinality, decided for 100,000 certificates: the only per-certificate series are the expiry
of certificates something presents (bound, or a server's default) and the attempts of
certificates whose renewal is failing, labelled ``certificate_id`` (stable across renewals and
replacements), ``account_id`` (empty for the platform's), ``name`` (the first subjectAltName,
for people reading an alert) and ``source``; at most one series per certificate in use, about
150 bytes each. Domains never get a series of their own (a server holds 10,000): client
warnings are counts per service and reason. Servers get a handful each (a fleet is hundreds).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.deployments.models import STATUSES
from app.domains.models import SERVICES
from app.domains.tls_rows import REASONS
from app.metrics.repository import CertificateRow, RenewalRow, ServerRow
from app.webhooks.models import DELIVERY_STATUSES

PRUNED_TABLES = ("events", "webhook_deliveries", "webhook_attempts", "deployments", "deployment_attempts")


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    read_seconds: float
    certificates: list[CertificateRow] = field(default_factory=list)
    renewals: dict[str, int] = field(default_factory=dict)
    failing_renewals: list[RenewalRow] = field(default_factory=list)
    orders: dict[tuple[str, str], int] = field(default_factory=dict)
    warnings: dict[tuple[str, str], int] = field(default_factory=dict)
    servers: list[ServerRow] = field(default_factory=list)
    webhook_deliveries: dict[str, int] = field(default_factory=dict)
    pruned: dict[str, int] = field(default_factory=dict)  # rows retention deleted, by table

    def timed(self, seconds: float) -> Snapshot:
        return dataclasses.replace(self, read_seconds=seconds)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def families(snap: Snapshot) -> Iterator[Metric]:
    """Every database-derived family; a family is exported even when empty, so rules and
    dashboards can rely on its name."""
    yield from _certificates(snap)
    yield from _warnings(snap)
    yield from _servers(snap)
    deliveries = _gauge("certpost_webhook_deliveries",
                        "Webhook deliveries by status; delivered and failed only grow (pruned ones included).",
                        ["status"])
    for status in DELIVERY_STATUSES:
        deliveries.add_metric([status], snap.webhook_deliveries.get(status, 0))
    yield deliveries
    pruned = CounterMetricFamily("certpost_retention_pruned_rows",
                                 "Rows the retention job deleted, by table (docs/operations.md).", labels=["table"])
    for table in PRUNED_TABLES:
        pruned.add_metric([table], snap.pruned.get(table, 0))
    yield pruned
    yield GaugeMetricFamily("certpost_metrics_snapshot_timestamp_seconds",
                            "When the database figures of this scrape were read (they are cached briefly).",
                            value=snap.taken_at.timestamp())
    yield GaugeMetricFamily("certpost_metrics_snapshot_duration_seconds",
                            "How long reading the database figures took.", value=snap.read_seconds)


def _certificates(snap: Snapshot) -> Iterator[Metric]:
    expiry = _gauge("certpost_certificate_not_after_timestamp_seconds",
                    "notAfter of each certificate in use (bound to a domain, or a server's default), Unix time.",
                    ["certificate_id", "account_id", "name", "source"])
    for c in snap.certificates:
        expiry.add_metric([c.id, c.account_id or "", c.name, c.source], c.not_after.timestamp())
    yield expiry
    renewals = _gauge("certpost_certificate_renewals", "ACME certificates by renewal status.", ["status"])
    for status in ("scheduled", "renewing", "failed", "none"):
        renewals.add_metric([status], snap.renewals.get(status, 0))
    yield renewals
    failing = _gauge("certpost_certificate_renewal_failed_attempts",
                     "Failed renewal attempts of each ACME certificate whose renewal is failing.",
                     ["certificate_id", "account_id", "name"])
    for r in snap.failing_renewals:
        failing.add_metric([r.id, r.account_id or "", r.name], r.attempts)
    yield failing
    orders = _gauge("certpost_acme_orders",
                    "ACME orders by purpose (new, renewal, replace) and status; valid and invalid only grow.",
                    ["purpose", "status"])
    for (purpose, status), count in sorted(snap.orders.items()):
        orders.add_metric([purpose, status], count)
    yield orders


def _warnings(snap: Snapshot) -> Iterator[Metric]:
    names = _gauge("certpost_domain_service_names",
                   "Domain service names (webmail.<domain>, mail.<domain>), bound or on the server's default.",
                   ["service"])
    warned = _gauge("certpost_client_warning_names",
                    "Domain service names whose clients would show a certificate warning (any reason).", ["service"])
    reasons = _gauge("certpost_client_warnings",
                     "Domain service names whose clients would warn, by reason (a name may have several).",
                     ["service", "reason"])
    for service in SERVICES:
        names.add_metric([service], snap.warnings.get((service, "all"), 0))
        warned.add_metric([service], snap.warnings.get((service, "any"), 0))
        for reason in REASONS:
            reasons.add_metric([service, reason], snap.warnings.get((service, reason), 0))
    yield from (names, warned, reasons)


def _servers(snap: Snapshot) -> Iterator[Metric]:
    by_state = Counter(s.latest_state for s in snap.servers if s.latest_state)
    deployments = _gauge("certpost_deployments", "Servers by the state of their newest deployment.", ["state"])
    for state in STATUSES:
        deployments.add_metric([state], by_state.get(state, 0))
    yield deployments
    state = _gauge("certpost_server_deployment_state",
                   "1 for the state of the server's newest deployment, 0 for the others.",
                   ["server_id", "server", "state"])
    lag = _gauge("certpost_server_generation_lag",
                 "Generations the server's agent has not applied yet (desired minus applied).", ["server_id", "server"])
    held = _gauge("certpost_server_held_back_names",
                  "Names the server's applied generation holds back on what they served before.", ["server_id", "server"])
    contact = _gauge("certpost_agent_last_contact_timestamp_seconds",
                     "When the server's agent last answered the controller, Unix time; 0: never.",
                     ["server_id", "server"])
    for s in snap.servers:
        labels = [s.id, s.name]
        if s.latest_state:
            for each in STATUSES:
                state.add_metric([*labels, each], 1.0 if each == s.latest_state else 0.0)
        lag.add_metric(labels, max(0, s.desired_generation - s.applied_generation))
        held.add_metric(labels, s.held_back)
        if s.has_agent:
            contact.add_metric(labels, s.agent_contact_at.timestamp() if s.agent_contact_at else 0.0)
    yield from (state, lag, held, contact)
