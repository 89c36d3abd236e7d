"""What each mail server software can serve: the table in shared/guide/domain.md, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.problems import Conflict

Software = Literal["postfix-dovecot", "postfix-courier", "qmail-courier", "mailenable"]


@dataclass(frozen=True)
class Capabilities:
    per_domain_mail: bool
    per_domain_webmail: bool
    server_wide_mail: bool
    agent: bool  # a certpost agent can run on it
    lacking_sni: str | None = None  # the component that cannot select a certificate by SNI


CAPABILITIES: dict[str, Capabilities] = {
    # Postfix tls_server_sni_maps (postconf(5)) and Dovecot local_name blocks.
    "postfix-dovecot": Capabilities(True, True, True, True),
    # Postfix by SNI; Courier-IMAP 5 by TLS_CERTFILE.<domain> files (courier-imap 5 imapd(8)).
    "postfix-courier": Capabilities(True, True, True, True),
    # qmail-smtpd serves exactly one certificate, so per-domain mail cannot work.
    "qmail-courier": Capabilities(False, True, True, True, lacking_sni="qmail's SMTP server (qmail-smtpd)"),
    # Windows: modelled by the controller; no agent runs there.
    "mailenable": Capabilities(True, True, True, False),
}


def capabilities(software: str) -> Capabilities:
    return CAPABILITIES[software]


def sni_advice(software: str, server_hostname: str) -> str:
    """What to do instead of a per-domain mail certificate (domain.md, the refusal sentence)."""
    lacking = capabilities(software).lacking_sni or "this server software"
    return (
        f"{lacking} cannot choose a certificate by SNI, so per-domain mail certificates cannot be "
        f"served on {software} servers. Instead, put a trusted certificate for the server's host "
        f"name {server_hostname} as its server-wide mail certificate (PUT /v1/servers/{{id}}/mail-certificate) "
        f"and configure mail clients to use {server_hostname} instead of mail.<domain>."
    )


class SniUnsupported(Conflict):
    """The server's software cannot serve a per-domain mail certificate (no SNI for IMAP/SMTP): `advice` says what to do and `recommended_client_hostname` which host name mail clients should use."""

    code, title = "sni_unsupported", "This server cannot serve a per-domain mail certificate"
    extensions = ("advice", "recommended_client_hostname",)


def require_per_domain_mail(software: str, server_hostname: str, domain_name: str) -> None:
    """Refuse (409 ``sni_unsupported``) a per-domain mail certificate for ``mail.<domain_name>``
    on a server whose software cannot present one: the one rule a bind, an ACME order that binds
    and the certificate picker all apply, so none offers what another would refuse."""
    if not capabilities(software).per_domain_mail:
        raise SniUnsupported(
            f"{software} cannot serve a per-domain mail certificate for mail.{domain_name}",
            advice=sni_advice(software, server_hostname),
            recommended_client_hostname=server_hostname,
        )


# -- TLS fronts and ports ------------------------------------------------------------------------

TlsFront = Literal["haproxy"]
TLS_FRONTS: dict[str, tuple[str, ...]] = {
    # HAProxy terminates IMAPS and POP3S by SNI for Dovecot (the agent's [haproxy] section).
    "haproxy": ("postfix-dovecot",),
}
"""Each front and the software it can stand in front of."""

IMPLICIT_TLS = ("smtps", "imaps", "pop3s")  # RFC 8314: preferred over STARTTLS for mail clients


@dataclass(frozen=True)
class MailPort:
    """One standard mail port of a server: who terminates TLS there, and whether that daemon
    presents the domain's own certificate (by SNI) or the server-wide one."""

    port: int
    protocol: str  # as the agent's verify targets name them
    daemon: str
    per_domain: bool


_POSTFIX = (
    (25, "smtp-starttls"), (587, "smtp-starttls"), (465, "smtps"),
)  # fmt: skip
_IMAP_POP3 = ((143, "imap-starttls"), (993, "imaps"), (110, "pop3-starttls"), (995, "pop3s"))
_DAEMONS = {
    "postfix-dovecot": ("postfix", "dovecot"),
    "postfix-courier": ("postfix", "courier"),
    "qmail-courier": ("qmail", "courier"),
    "mailenable": ("mailenable", "mailenable"),
}


def front_allowed(software: str, tls_front: str | None) -> bool:
    return tls_front is None or software in TLS_FRONTS.get(tls_front, ())


def mail_ports(software: str, tls_front: str | None) -> tuple[MailPort, ...]:
    """Which certificate each standard mail port presents for ``mail.<domain>``.

    With an HAProxy front, IMAPS and POP3S are the front's (per domain, at any number of
    domains); STARTTLS on 143 and 110 stays on Dovecot, which then presents only the
    server-wide certificate (its per-name blocks are what stops scaling). Postfix keeps its SNI
    maps on every port.
    """
    per_domain = capabilities(software).per_domain_mail
    smtp, imap = _DAEMONS[software]
    ports = [MailPort(port, protocol, smtp, per_domain) for port, protocol in _POSTFIX]
    for port, protocol in _IMAP_POP3:
        if tls_front is not None and protocol in IMPLICIT_TLS:
            ports.append(MailPort(port, protocol, tls_front, per_domain))
        elif tls_front is not None:
            ports.append(MailPort(port, protocol, imap, False))
        else:
            ports.append(MailPort(port, protocol, imap, per_domain))
    return tuple(ports)


def dovecot_capacity_applies(software: str, tls_front: str | None) -> bool:
    """Dovecot's per-name blocks limit a server only when Dovecot serves them itself."""
    return software == "postfix-dovecot" and tls_front is None
