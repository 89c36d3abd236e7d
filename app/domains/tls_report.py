"""A domain's TLS status row from its facts, through the pure rules of ``rules.py``.

The same functions as ``GET /v1/domains/{d}/tls`` (``rules.service_status``,
``rules.name_deployment``) on the same facts, so a row of the list and the single-domain
status cannot disagree (tests/test_domain_tls_list.py compares them). Also the row's flat
CSV form for the export.
"""

from __future__ import annotations

from datetime import datetime

from app.domains import rules
from app.domains.models import SERVICES
from app.domains.tls_rows import DomainTlsFacts, ServerTlsFacts
from app.servers.software import capabilities, mail_ports


def _deployment(state: rules.NameDeployment) -> dict:
    return {"state": state.state, "reason": state.reason, "agent_code": state.agent_code, "message": state.message,
            "fingerprint": state.fingerprint, "serving": state.serving}


def drift_name(domain: DomainTlsFacts, service: str, hostname: str) -> str:
    """The name whose drift observations stand for the service's: its own when bound, else ""
    (the no-SNI probes: an unbound name is served the default)."""
    return hostname if domain.bound[service] else ""


def row(domain: DomainTlsFacts, server: ServerTlsFacts, soonest: datetime, now: datetime, expiring_days: int,
        drifted: frozenset | set = frozenset()) -> dict:
    """The ``DomainTlsRow`` of one domain as a plain dict in the model's field order.

    Serialised by ``pydantic_core.to_json`` without building the models: a page is validated
    by nothing but its own construction here (every value comes from a typed column or a rule),
    and validating 10,000 export rows cost more than computing them (docs/performance.md).
    """
    facts = server.server
    per_domain = capabilities(facts.software).per_domain_mail
    ports = mail_ports(facts.software, facts.tls_front)
    up_to_date = facts.applied_generation >= facts.desired_generation
    parts = {}
    warns = False
    for service in SERVICES:
        cert = domain.presented[service]
        status = rules.service_status(
            service, domain.name, cert, "binding" if domain.bound[service] else "server-default",
            server_hostname=facts.hostname, server_cert=server.certificate, per_domain_mail=per_domain,
            now=now, expiring_days=expiring_days, ports=ports if service == "mail" else (),
        )
        deployment = rules.name_deployment(
            service, status.hostname, cert.fingerprint_sha256, has_agent=bool(facts.agent_url),
            up_to_date=up_to_date, failed_names=server.failed_names,
        )
        part = {
            "hostname": status.hostname, "source": status.source, "certificate_id": cert.id,
            "certificate_names": cert.sans, "not_after": cert.not_after, "client_warning": status.client_warning,
            "reasons": status.reasons, "notices": status.notices, "deployment": _deployment(deployment),
            "drifted": (domain.server_id, drift_name(domain, service, status.hostname), service) in drifted,
        }
        if service == "mail":
            part["recommended_client_hostname"] = status.recommended_client_hostname
            part["recommendation_reason"] = status.recommendation_reason
            part["recommended_ports"] = status.recommended_ports
        warns = warns or status.client_warning
        parts[service] = part
    return {"domain": domain.name, "server_id": domain.server_id, "account_id": domain.account_id,
            "client_warning": warns, "not_after": soonest, **parts}


CSV_COLUMNS = (
    "domain", "server_id", "account_id", "client_warning", "not_after",
    *(f"{s}_{c}" for s in SERVICES for c in (
        "hostname", "source", "certificate_id", "certificate_names", "not_after", "client_warning", "reasons",
        "notices", "deployment_state", "deployment_agent_code", "drifted")),
    "mail_recommended_client_hostname", "mail_recommendation_reason", "mail_recommended_ports",
)
"""The export's CSV header: a row flattened, lists joined by spaces (host names and codes
contain none), the deployment's state and agent code (its free-text message is left out)."""


def csv_record(item: dict) -> list[str]:
    """One CSV record in ``CSV_COLUMNS`` order, from a row as JSON would carry it."""
    out = [item["domain"], item["server_id"], item["account_id"], _flag(item["client_warning"]), item["not_after"]]
    for service in SERVICES:
        part = item[service]
        out += [part["hostname"], part["source"], part["certificate_id"], " ".join(part["certificate_names"]),
                part["not_after"], _flag(part["client_warning"]), " ".join(part["reasons"]),
                " ".join(part["notices"]), part["deployment"]["state"], part["deployment"]["agent_code"] or "",
                _flag(part["drifted"])]
    mail = item["mail"]
    out += [mail["recommended_client_hostname"] or "", mail["recommendation_reason"] or "",
            " ".join(str(p) for p in mail["recommended_ports"])]
    return out


def _flag(value: bool) -> str:
    return "true" if value else "false"
