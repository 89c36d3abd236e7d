from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.paging import Page
from app.schemas import Strict, WarningOut

Service = Literal["webmail", "mail"]


class DomainCreate(Strict):
    name: str = Field(min_length=1, max_length=253, description="e.g. example.com or bücher.example (stored as A-labels)")
    server_id: str
    account_id: str


class DomainOut(BaseModel):
    id: str
    name: str
    server_id: str
    account_id: str
    created_at: datetime


class DomainPage(Page[DomainOut]):
    """A page of domains, in name order."""


class BindingIn(Strict):
    certificate_id: str


class NameDeploymentOut(BaseModel):
    """Whether what is bound here is what the server serves (docs/architecture.md, blast radius)."""

    state: Literal["deployed", "pending", "failed", "no_agent"] = Field(
        description="`failed`: the server applied its change but kept this name on what it served "
        "before, because the bound certificate cannot be served (see `agent_code`, `message`)."
    )
    reason: str | None = Field(None, description="`deployment_failed` when `state` is `failed`.")
    agent_code: str | None = Field(
        None, description="`invalid_bundle`, `key_refused`, `handshake_failed` or `verify_failed`."
    )
    message: str | None = Field(None, description="The agent's (OpenSSL's) words.")
    fingerprint: str | None = Field(None, description="The bound certificate that failed.")
    serving: str | None = Field(
        None, description="What the name is still served; null with `failed`: the server default."
    )


class BindingOut(BaseModel):
    domain: str
    service: Service
    hostname: str
    source: Literal["binding", "server-default"]
    certificate_id: str
    fingerprint_sha256: str
    warnings: list[WarningOut] = []
    deployment: NameDeploymentOut | None = Field(
        None, description="Whether the server serves it (GET; null in a binding change's answer)."
    )


class BindingsOut(BaseModel):
    domain: str
    webmail: BindingOut
    mail: BindingOut


class PresentedCertificate(BaseModel):
    id: str
    fingerprint_sha256: str
    subject: str
    issuer: str
    sans: list[str]
    not_after: datetime
    self_signed: bool


class ServiceTls(BaseModel):
    hostname: str
    source: Literal["binding", "server-default"]
    certificate: PresentedCertificate
    trusted: bool
    covers_hostname: bool
    expires_at: datetime
    client_warning: bool = Field(description="True when a client connecting to `hostname` would warn.")
    reasons: list[str] = Field(description="Why it would warn (codes).")
    notices: list[str] = Field(description="Worth knowing, no client warning (e.g. certificate_expiring).")
    deployment: NameDeploymentOut


class MailTls(ServiceTls):
    recommended_client_hostname: str | None = Field(
        description="What to configure in mail clients: mail.<domain> when that is warning-free, "
        "else the server's host name when its certificate is trusted, else null."
    )
    recommendation_reason: str | None


class DeploymentState(BaseModel):
    desired_generation: int
    applied_generation: int
    up_to_date: bool


class TlsStatus(BaseModel):
    domain: str
    server_id: str
    server_hostname: str
    webmail: ServiceTls
    mail: MailTls
    deployment: DeploymentState
    warnings: list[WarningOut] = []
