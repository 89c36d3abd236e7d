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
    default_certificate_id: str
    desired_generation: int
    applied_generation: int
    per_domain_mail_certificates: int
    warnings: list[WarningOut]
    created_at: datetime
    updated_at: datetime


class ServerPage(Page[ServerOut]):
    """A page of servers, in name order."""
