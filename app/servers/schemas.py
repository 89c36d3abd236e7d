from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.paging import Page
from app.schemas import DisplayName, Strict, WarningOut

SoftwareName = Literal["postfix-dovecot", "postfix-courier", "qmail-courier", "mailenable"]
TlsFrontName = Literal["haproxy"]
_TLS_FRONT = ("A TLS front that serves the implicit-TLS mail ports (IMAPS 993, POP3S 995) by SNI in front of the "
              "mail daemons: `haproxy` (only with `postfix-dovecot`; the agent's `[haproxy]` section, docs/agent.md). "
              "With it, per-domain mail certificates scale past Dovecot's own limit and STARTTLS (143, 110) presents "
              "the server-wide certificate; null: the daemons terminate TLS themselves.")
FINGERPRINT = r"^[0-9a-fA-F:]{64,95}$"


class ServerCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "mx1", "hostname": ex.SERVER_HOSTNAME, "software": "postfix-dovecot",
        "agent_url": "https://mx1.example.net:8443", "agent_tls_fingerprint": ex.SERVER_FINGERPRINT,
        "tls_front": None,
    }]})

    name: DisplayName = Field(description="A unique name for people.", examples=["mx1"])
    hostname: str = Field(min_length=1, max_length=253, description="The server's own host name, e.g. mx1.example.net",
                          examples=[ex.SERVER_HOSTNAME])
    software: SoftwareName = Field(description="The mail software, which decides what it can serve per domain "
                                   "(`capabilities`).", examples=["postfix-dovecot"])
    agent_url: str | None = Field(None, max_length=500, description="https:// URL of the certpost agent",
                                  examples=["https://mx1.example.net:8443"])
    agent_tls_fingerprint: str | None = Field(
        None, pattern=FINGERPRINT, description="SHA-256 of the agent's TLS certificate, as the agent printed it",
        examples=[ex.SERVER_FINGERPRINT],
    )
    tls_front: TlsFrontName | None = Field(None, description=_TLS_FRONT, examples=[None, "haproxy"])


class ServerPatch(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"agent_url": "https://mx1.example.net:8443",
                                                               "agent_tls_fingerprint": ex.SERVER_FINGERPRINT}]})

    name: DisplayName | None = Field(None, description="A new unique name.", examples=["mx1"])
    agent_url: str | None = Field(None, max_length=500, description="The agent's new https:// URL; null removes "
                                  "the agent.", examples=["https://mx1.example.net:8443"])
    agent_tls_fingerprint: str | None = Field(None, pattern=FINGERPRINT, description="The agent's new TLS "
                                              "certificate fingerprint (SHA-256).", examples=[ex.SERVER_FINGERPRINT])
    tls_front: TlsFrontName | None = Field(None, description=_TLS_FRONT + " Null removes the front.",
                                           examples=["haproxy"])


class MailCertificateIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"certificate_id": ex.SERVER_CERTIFICATE_ID}]})

    certificate_id: str = Field(description="A platform certificate covering the server's host name.",
                                examples=[ex.SERVER_CERTIFICATE_ID])


class WebmailCertificateIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"certificate_id": ex.CERTIFICATE_ID}]})

    certificate_id: str = Field(
        description="A platform certificate (uploaded without an account) that covers the server's host name, "
        "in date.",
        examples=[ex.CERTIFICATE_ID],
    )


class CapabilitiesOut(BaseModel):
    per_domain_mail: bool = Field(description="It can serve a certificate per domain for IMAP/POP3/SMTP (SNI).",
                                  examples=[True])
    per_domain_webmail: bool = Field(description="It can serve a certificate per domain for webmail.",
                                     examples=[True])
    server_wide_mail: bool = Field(description="It serves one server-wide mail certificate.", examples=[True])
    agent: bool = Field(description="A certpost agent can deploy to it.", examples=[True])


SERVER_EXAMPLE = {
    "id": ex.SERVER_ID, "name": "mx1", "hostname": ex.SERVER_HOSTNAME, "software": "postfix-dovecot",
    "capabilities": {"per_domain_mail": True, "per_domain_webmail": True, "server_wide_mail": True, "agent": True},
    "agent_url": "https://mx1.example.net:8443", "agent_tls_fingerprint": ex.SERVER_FINGERPRINT,
    "mail_certificate_id": ex.SERVER_CERTIFICATE_ID, "default_certificate_id": ex.SERVER_CERTIFICATE_ID,
    "webmail_certificate_id": None, "webmail_default_certificate_id": ex.SERVER_CERTIFICATE_ID, "tls_front": None, "desired_generation": 42, "applied_generation": 42, "per_domain_mail_certificates": 17, "warnings": [],
    "created_at": ex.CREATED, "updated_at": ex.UPDATED,
}


class ServerOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SERVER_EXAMPLE]})

    id: str = Field(description="The server's id.", examples=[ex.SERVER_ID])
    name: str = Field(description="Its name for people.", examples=["mx1"])
    hostname: str = Field(description="Its own host name.", examples=[ex.SERVER_HOSTNAME])
    software: SoftwareName = Field(description="Its mail software.", examples=["postfix-dovecot"])
    capabilities: CapabilitiesOut = Field(description="What its software can serve.")
    agent_url: str | None = Field(description="Its agent's URL; null: nothing is deployed automatically.",
                                  examples=["https://mx1.example.net:8443"])
    agent_tls_fingerprint: str | None = Field(description="The pinned SHA-256 of its agent's TLS certificate.",
                                              examples=[ex.SERVER_FINGERPRINT])
    mail_certificate_id: str = Field(description="The server-wide mail certificate (at first a self-signed one "
                                     "for its host name).", examples=[ex.SERVER_CERTIFICATE_ID])
    default_certificate_id: str = Field(
        description="The self-signed certificate made for the host name when the server was registered.",
        examples=[ex.SERVER_CERTIFICATE_ID],
    )
    webmail_certificate_id: str | None = Field(
        description="The webmail default an administrator chose (PUT .../webmail-certificate); null: none "
        "chosen, the server-wide mail certificate is presented.",
        examples=[None, ex.CERTIFICATE_ID],
    )
    webmail_default_certificate_id: str = Field(
        description="What HTTPS presents without SNI, for the server's host name and for webmail names "
        "without a binding: `webmail_certificate_id` when set, else `mail_certificate_id`.",
        examples=[ex.SERVER_CERTIFICATE_ID],
    )
    tls_front: TlsFrontName | None = Field(description=_TLS_FRONT, examples=[None, "haproxy"])
    desired_generation: int = Field(description="Its latest configuration generation.", examples=[42])
    applied_generation: int = Field(description="The generation its agent last applied.", examples=[42])
    per_domain_mail_certificates: int = Field(description="How many per-domain mail certificates it serves.",
                                              examples=[17])
    warnings: list[WarningOut] = Field(description="`mail_certificates_over_capacity` when Dovecot would reload "
                                       "slowly (never with a `tls_front`).")
    created_at: datetime = Field(description="When it was registered (UTC).", examples=[ex.CREATED])
    updated_at: datetime = Field(description="When it last changed (UTC).", examples=[ex.UPDATED])


class ServerPage(Page[ServerOut]):
    """A page of servers, in name order."""

    model_config = ex.page(SERVER_EXAMPLE, ex.cursor("servers", "mx1.example.net"))
