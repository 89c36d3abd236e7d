"""The binding rules and the TLS status report of shared/guide/domain.md, as pure functions.

Each function takes certificate-like objects (anything with ``sans``, ``not_before``,
``not_after``, ``trusted`` and ``self_signed``) and a moment, and returns codes. The HTTP layer
turns refusals into problems; nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from app.certificates import errors
from app.kit.coverage import covers, public_suffix_wildcard_for
from app.kit.mailclients import autoconfig_names
from app.kit.time import expired


class CertFacts(Protocol):
    sans: list[str]
    not_before: datetime
    not_after: datetime
    trusted: bool
    self_signed: bool


@dataclass(frozen=True)
class Warning:
    code: str
    message: str


def service_hostname(service: str, domain: str) -> str:
    """``webmail.<domain>`` or ``mail.<domain>``: the names clients connect to (domain.md)."""
    return f"{service}.{domain}"


def check_bindable(cert: CertFacts, hostname: str, now: datetime) -> None:
    """Refuse a certificate that cannot serve ``hostname`` at all (domain.md, "Rules")."""
    wildcard = public_suffix_wildcard_for(cert.sans, hostname)
    if wildcard is not None:
        raise errors.WildcardPublicSuffix(
            f"{wildcard} is a wildcard on a public suffix: clients refuse it, so it cannot serve {hostname}",
            hostname=hostname,
        )
    if not covers(cert.sans, hostname):
        raise errors.HostnameNotCovered(
            f"the certificate ({', '.join(cert.sans[:5]) or 'no DNS names'}) does not cover {hostname}",
            hostname=hostname,
        )
    if expired(cert.not_after, now):  # notAfter is inclusive, a whole second (RFC 5280 4.1.2.5)
        raise errors.CertificateExpired(f"the certificate expired at {cert.not_after.isoformat()}")
    if now < cert.not_before:
        raise errors.CertificateNotYetValid(f"the certificate is valid from {cert.not_before.isoformat()}")


def certificate_warnings(cert: CertFacts, now: datetime, expiring_days: int) -> list[Warning]:
    out: list[Warning] = []
    if cert.self_signed:
        out.append(Warning("self_signed", "The certificate is self-signed: every client will warn."))
    elif not cert.trusted:
        out.append(Warning("certificate_untrusted", "The certificate does not chain to a trusted root: clients will warn."))
    if cert.not_after - now < timedelta(days=expiring_days):
        days = max(0, (cert.not_after - now).days)
        out.append(Warning("certificate_expiring", f"The certificate expires in {days} days ({cert.not_after.date()})."))
    return out


def server_certificate_usable(server_cert: CertFacts, server_hostname: str, now: datetime) -> bool:
    """A server-wide mail certificate clients accept: trusted, in date, covering the host name."""
    return (
        server_cert.trusted
        and covers(server_cert.sans, server_hostname)
        and server_cert.not_before <= now
        and not expired(server_cert.not_after, now)
    )


def mail_binding_warnings(server_cert: CertFacts, server_hostname: str, now: datetime) -> list[Warning]:
    """domain.md: a per-domain mail certificate only helps when the server-wide one is trusted."""
    if server_certificate_usable(server_cert, server_hostname, now):
        return []
    return [
        Warning(
            "server_certificate_untrusted",
            f"The server-wide mail certificate of {server_hostname} is not trusted, so this per-domain "
            "certificate is not effective for clients that send no SNI; secure the server-wide certificate too.",
        )
    ]


def front_binding_warnings(hostname: str, server_hostname: str, ports: tuple) -> list[Warning]:
    """A per-domain mail certificate behind a TLS front is not shown on Dovecot's STARTTLS ports
    (143, 110), which present the server-wide certificate: say which ports to configure."""
    shared = [p for p in ports if not p.per_domain]
    if not shared:
        return []
    own = sorted({p.port for p in ports if p.per_domain and p.protocol in IMPLICIT_TLS})
    return [
        Warning(
            "starttls_server_wide",
            f"Ports {', '.join(str(p.port) for p in shared)} ({', '.join(p.protocol for p in shared)}) present "
            f"the server-wide certificate of {server_hostname}, not this one: configure mail clients with "
            f"{hostname} on the implicit-TLS ports {', '.join(map(str, own))} (RFC 8314).",
        )
    ]


IDENTITY_REASONS = ("hostname_not_covered", "self_signed", "certificate_untrusted")


def identity_reasons(cert: CertFacts, hostname: str) -> list[str]:
    """The reasons of ``client_warning_reasons`` that do not depend on the moment: the names, the
    issuer and the stored trust verdict (what ``tls_summary`` keeps per domain)."""
    reasons: list[str] = []
    if not covers(cert.sans, hostname):
        reasons.append("hostname_not_covered")
    if cert.self_signed:
        reasons.append("self_signed")
    elif not cert.trusted:
        reasons.append("certificate_untrusted")
    return reasons


def client_warning_reasons(cert: CertFacts, hostname: str, now: datetime) -> list[str]:
    """Why a client connecting to ``hostname`` and shown ``cert`` would warn (empty: it won't)."""
    reasons = identity_reasons(cert, hostname)
    if expired(cert.not_after, now):
        reasons.append("certificate_expired")
    elif now < cert.not_before:
        reasons.append("certificate_not_yet_valid")
    return reasons


@dataclass(frozen=True)
class PortStatus:
    """What a client connecting to ``mail.<domain>`` on one port is shown."""

    port: int
    protocol: str
    daemon: str
    source: str  # "binding" | "server-default": the domain's certificate or the server-wide one
    reasons: tuple[str, ...]  # why a client would warn there (empty: it would not)


@dataclass
class ServiceStatus:
    service: str
    hostname: str
    source: str  # "binding" | "server-default"
    reasons: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    recommended_client_hostname: str | None = None
    recommendation_reason: str | None = None
    ports: list[PortStatus] = field(default_factory=list)
    recommended_ports: list[int] = field(default_factory=list)

    @property
    def client_warning(self) -> bool:
        return bool(self.reasons)


def service_status(
    service: str,
    domain: str,
    presented: CertFacts,
    source: str,
    *,
    server_hostname: str,
    server_cert: CertFacts,
    per_domain_mail: bool,
    now: datetime,
    expiring_days: int,
    ports: tuple = (),
) -> ServiceStatus:
    """What a client connecting to ``<service>.<domain>`` sees, and what to tell users (domain.md).

    ``ports`` (mail only; ``app.servers.software.mail_ports``) adds, per port, which certificate
    is presented there, and the implicit-TLS ports (RFC 8314) to configure with the
    recommended host name: with a TLS front STARTTLS shows the server-wide certificate, so a
    client of ``mail.<domain>`` is pointed at 993, 995 and 465.
    """
    hostname = service_hostname(service, domain)
    status = ServiceStatus(service, hostname, source, client_warning_reasons(presented, hostname, now))
    if presented.not_after - now < timedelta(days=expiring_days) and not expired(presented.not_after, now):
        status.notices.append("certificate_expiring")
    if service != "mail":
        return status
    if source == "binding" and not server_certificate_usable(server_cert, server_hostname, now):
        status.notices.append("server_certificate_untrusted")
    if not status.reasons:
        status.recommended_client_hostname = hostname
    elif server_certificate_usable(server_cert, server_hostname, now):
        status.recommended_client_hostname = server_hostname
        status.recommendation_reason = (
            "no_sni_support" if not per_domain_mail else "mail_hostname_warns"
        )
    else:
        status.recommendation_reason = "server_certificate_untrusted"
    status.ports, status.recommended_ports = port_statuses(
        hostname, presented, source, server_cert, server_hostname, status.recommended_client_hostname, ports, now
    )
    return status


IMPLICIT_TLS = ("smtps", "imaps", "pop3s")


def port_statuses(
    hostname: str, presented: CertFacts, source: str, server_cert: CertFacts, server_hostname: str,
    recommended: str | None, ports: tuple, now: datetime,
) -> tuple[list[PortStatus], list[int]]:
    """Per port, what ``hostname`` is shown; and the implicit-TLS ports where ``recommended`` is
    shown a certificate without a warning (the server-wide one covers the server's host name on
    every port)."""
    out: list[PortStatus] = []
    recommended_ports: list[int] = []
    for p in ports:
        cert, src = (presented, source) if p.per_domain else (server_cert, "server-default")
        out.append(PortStatus(p.port, p.protocol, p.daemon, src, tuple(client_warning_reasons(cert, hostname, now))))
        if p.protocol not in IMPLICIT_TLS or recommended is None:
            continue
        shown = server_cert if recommended == server_hostname or not p.per_domain else presented
        if not client_warning_reasons(shown, recommended, now):
            recommended_ports.append(p.port)
    return out, recommended_ports
def autoconfig_hostname(mail: ServiceStatus, server_hostname: str) -> str:
    """The host name mail client autoconfiguration advertises for a domain (docs/autoconfig.md).

    ``recommended_client_hostname`` of its mail status: ``mail.<domain>`` when a client would
    not warn there, else the server's host name when the server-wide certificate is trusted.
    When neither is warning-free, still the server's host name: that is the name the
    server-wide certificate was made for, so a user accepts one exception for one name rather
    than one per domain, and it becomes warning-free as soon as that certificate is secured.
    """
    return mail.recommended_client_hostname or server_hostname


def mail_names_named(sans: list[str]) -> list[str]:
    """The ``mail.<d>`` names a certificate's SANs can cover: ``mail.<d>`` itself, or ``<d>``'s
    wildcard (which covers one label). Used when a server-wide certificate changes: only those
    domains' mail status (and so their autoconfiguration) can move with it."""
    out = []
    for san in sans:
        if san.startswith("*."):
            out.append(f"mail.{san[2:]}")
        elif san.startswith("mail."):
            out.append(san)
    return out


def autoconfig_uncovered(webmail_cert: CertFacts, domain: str) -> list[str]:
    """Which of ``autoconfig.<d>`` and ``autodiscover.<d>`` the certificate nginx presents for
    them (the domain's webmail certificate, else the server's default) does not cover."""
    return [name for name in autoconfig_names(domain) if not covers(webmail_cert.sans, name)]


@dataclass(frozen=True)
class NameDeployment:
    """Whether the certificate bound (or defaulted) for one service name is what the server serves.

    ``failed``: the agent applied the server's change but held this name back on what it served
    before (``serving``; None: the server default), because ``fingerprint`` could not be served
    (``agent_code``, ``message``: the agent's words). See app.agent.isolation.
    """

    state: str  # "deployed" | "pending" | "failed" | "no_agent"
    reason: str | None = None  # "deployment_failed" when failed
    agent_code: str | None = None
    message: str | None = None
    fingerprint: str | None = None
    serving: str | None = None


def name_deployment(
    service: str,
    hostname: str,
    fingerprint: str,
    *,
    has_agent: bool,
    up_to_date: bool,
    failed_names: list[dict],
) -> NameDeployment:
    """The deployment state of ``<service>.<domain>`` from the server's last applied deployment.

    A reported failure stands while the name is still bound to the certificate that failed,
    even when a newer generation is pending (the agent carries it forward until the name is
    bound to something servable); a new certificate makes it ``pending`` until applied.
    """
    if not has_agent:
        return NameDeployment("no_agent")
    for failure in failed_names:
        if (
            failure.get("service") == service
            and failure.get("name") == hostname
            and failure.get("fingerprint") == fingerprint
        ):
            return NameDeployment(
                "failed",
                "deployment_failed",
                failure.get("code"),
                failure.get("message"),
                fingerprint,
                failure.get("serving"),
            )
    return NameDeployment("deployed" if up_to_date else "pending")
