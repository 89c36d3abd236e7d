"""The JSON of ``GET /v1/domains/{name}/tls``, built as plain dicts and encoded once (issue 8).

The route declares ``TlsStatus`` as its response model (the OpenAPI document) but does not build
the dozen nested models of it on every request: it builds the same fields, in the models' order
and with the values the models would hold, as dicts and lists, and ``pydantic_core.to_json``
encodes them as the models' ``model_dump_json`` would (compact, ISO 8601 ``Z`` datetimes).
``tests/test_reads.py`` checks that the body read back into ``TlsStatus`` and dumped again is the
same bytes. A field added to a model in app/domains/schemas.py must be added here too.
"""

from __future__ import annotations

from datetime import datetime

from pydantic_core import to_json

from app.domains import rules
from app.domains.service import DomainStatus
from app.kit.coverage import covers
from app.kit.mailclients import ENDPOINTS, autoconfig_names
from app.schemas import JsonResponse
from app.servers.software import capabilities, mail_ports

_ENDPOINTS = [{"protocol": e.protocol, "port": e.port, "security": e.security} for e in ENDPOINTS]

_FAILURE_ADVICE = {
    "config_refused": "The server's configuration cannot take this name; ask the operator.",
    "verify_failed": "The server did not serve it after reloading; ask the operator.",
}
_KEY_ADVICE = "Bind a certificate whose key the server can use (RSA of 2048 bits or more, or ECDSA P-256/P-384)."


def warning(code: str, message: str) -> dict:
    return {"code": code, "message": message}  # WarningOut


def deployment_warning(server) -> dict:
    if not server.agent_url:
        return warning("no_agent", "The server has no agent (agent_url), so nothing bound here "
                       "is deployed automatically; configure the server by hand or register its agent.")
    return warning("not_yet_deployed", f"The server has applied generation {server.applied_generation} of "
                   f"{server.desired_generation}: what is bound here may not be served yet.")


def failure_warning(state: rules.NameDeployment, hostname: str) -> dict:
    kept = f"still served {state.serving}" if state.serving else "served the server's default certificate"
    advice = _FAILURE_ADVICE.get(state.agent_code or "", _KEY_ADVICE)
    return warning("deployment_failed", f"The server cannot serve the certificate bound to {hostname} "
                   f"({state.agent_code}: {state.message}); {hostname} is {kept}. {advice}")


def autoconfig_warning(uncovered: list[str]) -> dict:
    return warning(
        "autoconfig_names_not_covered",
        f"The certificate served for {' and '.join(uncovered)} does not cover "
        f"{'them' if len(uncovered) > 1 else 'it'}: mail clients that look their settings up there meet a "
        "certificate error. Bind a webmail certificate that names them too (a wildcard covers them).",
    )


def deployment(state: rules.NameDeployment) -> dict:  # NameDeploymentOut
    return {"state": state.state, "reason": state.reason, "agent_code": state.agent_code, "message": state.message,
            "fingerprint": state.fingerprint, "serving": state.serving}


def _presented(cert) -> dict:  # PresentedCertificate
    return {"id": cert.id, "fingerprint_sha256": cert.fingerprint_sha256, "subject": cert.subject,
            "issuer": cert.issuer, "sans": list(cert.sans), "not_after": cert.not_after,
            "self_signed": bool(cert.self_signed)}


def _port(port: rules.PortStatus) -> dict:  # MailPortTls
    return {"port": port.port, "protocol": port.protocol, "daemon": port.daemon, "source": port.source,
            "client_warning": bool(port.reasons), "reasons": list(port.reasons)}


def _autoconfig(domain: str, mail: rules.ServiceStatus, webmail_cert, server_hostname: str, deployed: bool) -> dict:
    """What autoconfiguration advertises (AutoconfigTls): the same rule the desired document uses."""
    return {"hostname": rules.autoconfig_hostname(mail, server_hostname), "endpoints": _ENDPOINTS,
            "names": autoconfig_names(domain), "uncovered_names": rules.autoconfig_uncovered(webmail_cert, domain),
            "deployed": deployed}


def report(status: DomainStatus, states: dict[str, rules.NameDeployment], observed: dict[str, list[dict]],
           now: datetime, expiring_days: int, capacity_warnings: list) -> JsonResponse:
    """The TLS status (``TlsStatus``) of what ``DomainService.observed_status`` found."""
    domain, server, effective = status.domain, status.server, status.effective
    per_domain = capabilities(server.software).per_domain_mail
    parts, judged = {}, {}
    for service, eff in effective.items():
        cert = eff.certificate
        judged[service] = st = rules.service_status(
            service, domain.name, cert, eff.source,
            server_hostname=server.hostname, server_cert=status.server_certificate, per_domain_mail=per_domain,
            now=now, expiring_days=expiring_days,
            ports=mail_ports(server.software, server.tls_front) if service == "mail" else (),
        )
        part = {"hostname": st.hostname, "source": st.source, "certificate": _presented(cert),
                "trusted": bool(cert.trusted), "covers_hostname": covers(cert.sans, st.hostname),
                "expires_at": cert.not_after, "client_warning": st.client_warning, "reasons": list(st.reasons),
                "notices": list(st.notices), "deployment": deployment(states[service]), "observed": observed[service]}
        if service == "mail":  # MailTls
            part.update(recommended_client_hostname=st.recommended_client_hostname,
                        recommendation_reason=st.recommendation_reason, ports=[_port(p) for p in st.ports],
                        recommended_ports=list(st.recommended_ports))
        parts[service] = part
    up_to_date = server.applied_generation >= server.desired_generation
    warnings = [] if up_to_date else [deployment_warning(server)]
    warnings += [failure_warning(st, effective[s].hostname) for s, st in states.items() if st.state == "failed"]
    warnings += [warning(w.code, w.message) for w in capacity_warnings]
    autoconfig = _autoconfig(domain.name, judged["mail"], effective["webmail"].certificate, server.hostname,
                             up_to_date)
    if autoconfig["uncovered_names"]:
        warnings.append(autoconfig_warning(autoconfig["uncovered_names"]))
    return JsonResponse(to_json({
        "domain": domain.name, "server_id": server.id, "server_hostname": server.hostname,
        "webmail": parts["webmail"], "mail": parts["mail"], "autoconfig": autoconfig,
        "deployment": {"desired_generation": server.desired_generation,
                       "applied_generation": server.applied_generation, "up_to_date": up_to_date},
        "warnings": warnings,
    }))
