"""What each mail server software can serve: the table in shared/guide/domain.md, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
