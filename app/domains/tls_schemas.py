"""Answer models of the TLS status list (``GET /v1/domain-tls``) and its export rows.

One row per domain with what each service presents and whether clients warn: the facts of
``GET /v1/domains/{d}/tls`` a domain list shows, without the certificate's subject and issuer
(one call for the dialog) nor the server-level warnings (one call for the server's screen);
its ``autoconfig`` object is the same as there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.domains.schemas import AutoconfigTls, NameDeploymentOut

Reason = Literal[
    "hostname_not_covered", "self_signed", "certificate_untrusted", "certificate_expired", "certificate_not_yet_valid",
]
"""Why a client would warn (``rules.client_warning_reasons``)."""

Notice = Literal["certificate_expiring", "server_certificate_untrusted"]

Sort = Literal["name", "-name", "not_after", "-not_after"]
SORTS: tuple[str, ...] = ("name", "-name", "not_after", "-not_after")


class ServiceTlsRow(BaseModel):
    hostname: str = Field(description="The name clients connect to: `webmail.<domain>` or `mail.<domain>`.",
                          examples=["webmail.example.com"])
    source: Literal["binding", "server-default"] = Field(
        description="`binding`: a certificate bound to this domain; `server-default`: the server's "
        "default (webmail) or server-wide mail certificate.", examples=["binding"])
    certificate_id: str = Field(description="The certificate presented.",
                                examples=["0b9c4d0e-2f57-4d69-9a38-1b8f0c8d2a11"])
    certificate_names: list[str] = Field(description="Its DNS names (subjectAltName).",
                                         examples=[["example.com", "*.example.com"]])
    not_after: datetime = Field(description="When it expires (notAfter, UTC).", examples=["2027-03-01T12:00:00Z"])
    client_warning: bool = Field(description="True when a client connecting to `hostname` would warn.",
                                 examples=[False])
    reasons: list[Reason] = Field(description="Why it would warn; empty when it would not.",
                                  examples=[["hostname_not_covered"]])
    notices: list[Notice] = Field(description="Worth knowing, no client warning.", examples=[["certificate_expiring"]])
    deployment: NameDeploymentOut = Field(description="Whether the server serves it.")
    drifted: bool = Field(description="A port of the server was last seen serving something else for `hostname` "
                          "than its agent applied (changed behind its back; a repair delivery is scheduled). The "
                          "ports and fingerprints: `observed` in `GET /v1/domains/{domain}/tls`.", examples=[False])


class MailTlsRow(ServiceTlsRow):
    recommended_client_hostname: str | None = Field(
        description="What to configure in mail clients: mail.<domain> when that is warning-free, else the "
        "server's host name when its certificate is trusted, else null.", examples=["mail.example.com"])
    recommendation_reason: Literal["no_sni_support", "mail_hostname_warns", "server_certificate_untrusted"] | None = (
        Field(description="Why `recommended_client_hostname` is not mail.<domain> (null when it is).",
              examples=[None]))
    recommended_ports: list[int] = Field(
        description="The implicit-TLS ports (993, 995, 465; RFC 8314) where `recommended_client_hostname` is shown "
        "a certificate without a warning (with a TLS front, STARTTLS on 143/110 shows the server-wide certificate).",
        examples=[[465, 993, 995]])


_DEPLOYED = {"state": "deployed", "reason": None, "agent_code": None, "message": None, "fingerprint": None,
             "serving": None}
_WEBMAIL = {"hostname": "webmail.example.com", "source": "binding", "certificate_id": ex.CERTIFICATE_ID,
            "certificate_names": ex.SANS, "not_after": ex.NOT_AFTER, "client_warning": True,
            "reasons": ["self_signed"], "notices": [], "deployment": _DEPLOYED, "drifted": False}
DOMAIN_TLS_ROW_EXAMPLE = {
    "domain": ex.DOMAIN, "server_id": ex.SERVER_ID, "account_id": ex.ACCOUNT_ID, "client_warning": True,
    "not_after": ex.NOT_AFTER, "webmail": _WEBMAIL,
    "mail": {**_WEBMAIL, "hostname": "mail.example.com", "recommended_client_hostname": ex.SERVER_HOSTNAME,
             "recommendation_reason": "mail_hostname_warns", "recommended_ports": [465, 993, 995]},
    "autoconfig": {"hostname": ex.SERVER_HOSTNAME,
                   "endpoints": [{"protocol": protocol, "port": port, "security": security} for protocol, port, security in (
                       ("imap", 993, "tls"), ("imap", 143, "starttls"), ("pop3", 995, "tls"), ("pop3", 110, "starttls"),
                       ("smtp", 465, "tls"), ("smtp", 587, "starttls"))],
                   "names": ["autoconfig.example.com", "autodiscover.example.com"],
                   "uncovered_names": ["autoconfig.example.com", "autodiscover.example.com"], "deployed": True},
}


class DomainTlsRow(BaseModel):
    """The TLS status of one domain, as a domain list shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [DOMAIN_TLS_ROW_EXAMPLE]})

    domain: str = Field(description="The domain (A-labels).", examples=["example.com"])
    server_id: str = Field(description="The server hosting it.", examples=["5f0e4c0a-8d1b-4a3e-9a55-3c3b8f1e2d10"])
    account_id: str = Field(description="The account owning it.", examples=["7d1f3a62-0c4e-4b8e-8f2a-6a1c9e5b4f03"])
    client_warning: bool = Field(description="True when webmail or mail would warn a client.", examples=[False])
    not_after: datetime = Field(description="The earlier of the two certificates' notAfter (what `sort=not_after` "
                                "orders by).", examples=["2027-03-01T12:00:00Z"])
    webmail: ServiceTlsRow = Field(description="What browsers see on `webmail.<domain>`.")
    mail: MailTlsRow = Field(description="What mail clients see on `mail.<domain>` (IMAP, POP3, SMTP).")
    autoconfig: AutoconfigTls = Field(
        description="What mail client autoconfiguration (Thunderbird autoconfig, Outlook Autodiscover, the Apple "
        "profile) advertises for this domain: the host name (`mail.recommended_client_hostname`, else the server's "
        "host name), the endpoints, the names clients look it up under and those of them the webmail certificate "
        "does not cover (`autoconfig_names_not_covered` in `GET /v1/domains/{domain}/tls`), and whether the server "
        "applied it (docs/autoconfig.md).")


class DomainTlsPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "items": [DOMAIN_TLS_ROW_EXAMPLE], "next_cursor": ex.cursor("domain-tls:name", ex.DOMAIN), "total": 1342}]})

    items: list[DomainTlsRow] = Field(description="This page's rows, in the requested order.")
    next_cursor: str | None = Field(
        description="Opaque: pass it as `cursor` to get the next page; null on the last page.",
        examples=["WyJkb21haW4tdGxzOm5hbWUiLCJleGFtcGxlLmNvbSJd", None])
    total: int | None = Field(None, description="How many rows match the filters over all pages; only with "
                              "`count=true`, else null.", examples=[1342, None])
