from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.paging import Page
from app.schemas import DisplayName, Strict, WarningOut

SoftwareName = Literal["postfix-dovecot", "postfix-courier", "qmail-courier", "mailenable"]
FINGERPRINT = r"^[0-9a-fA-F:]{64,95}$"


class ServerCreate(Strict):
    name: DisplayName
    hostname: str = Field(min_length=1, max_length=253, description="The server's own host name, e.g. mx1.example.net")
    software: SoftwareName
    agent_url: str | None = Field(None, max_length=500, description="https:// URL of the certpost agent")
    agent_tls_fingerprint: str | None = Field(
        None, pattern=FINGERPRINT, description="SHA-256 of the agent's TLS certificate, as the agent printed it"
    )


class ServerPatch(Strict):
    name: DisplayName | None = None
    agent_url: str | None = Field(None, max_length=500)
    agent_tls_fingerprint: str | None = Field(None, pattern=FINGERPRINT)


class MailCertificateIn(Strict):
    certificate_id: str


class WebmailCertificateIn(Strict):
    certificate_id: str = Field(
        description="A platform certificate (uploaded without an account) that covers the server's host name, "
        "in date.",
        examples=["0f6d3c1e-8a2b-4d5e-9f10-2a3b4c5d6e7f"],
    )


class CapabilitiesOut(BaseModel):
    per_domain_mail: bool
    per_domain_webmail: bool
    server_wide_mail: bool
    agent: bool


class ServerOut(BaseModel):
    id: str
    name: str
    hostname: str
    software: SoftwareName
    capabilities: CapabilitiesOut
    agent_url: str | None
    agent_tls_fingerprint: str | None
    mail_certificate_id: str
    default_certificate_id: str = Field(
        description="The self-signed certificate made for the host name when the server was registered.",
        examples=["7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"],
    )
    webmail_certificate_id: str | None = Field(
        description="The webmail default an administrator chose (PUT .../webmail-certificate); null: none "
        "chosen, the server-wide mail certificate is presented.",
        examples=[None, "0f6d3c1e-8a2b-4d5e-9f10-2a3b4c5d6e7f"],
    )
    webmail_default_certificate_id: str = Field(
        description="What HTTPS presents without SNI, for the server's host name and for webmail names "
        "without a binding: `webmail_certificate_id` when set, else `mail_certificate_id`.",
        examples=["0f6d3c1e-8a2b-4d5e-9f10-2a3b4c5d6e7f"],
    )
    desired_generation: int
    applied_generation: int
    per_domain_mail_certificates: int
    warnings: list[WarningOut]
    created_at: datetime
    updated_at: datetime


class ServerPage(Page[ServerOut]):
    """A page of servers, in name order."""
