from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.paging import Page


class AttemptOut(BaseModel):
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: dict | None
    bytes_sent: int


class FailedName(BaseModel):
    """A name the agent held back on what it served before, and why (docs/agent.md)."""

    name: str = Field(description="`mail.<domain>` or `webmail.<domain>`.")
    service: Literal["mail", "webmail"]
    fingerprint: str = Field(description="The certificate that could not be served.")
    code: str = Field(description="`invalid_bundle`, `key_refused`, `handshake_failed` or `verify_failed`.")
    message: str = Field(description="The agent's (OpenSSL's) words.")
    serving: str | None = Field(None, description="What the name is still served; null: the server default.")


class DeploymentOut(BaseModel):
    id: str
    server_id: str
    generation: int = Field(description="The server's desired generation this deployment delivers. While it "
                            "waits, a later change raises it in place (one waiting deployment per server).")
    reason: str = Field(description="What caused the latest change it carries.")
    changes: int = Field(description="How many changes (generations) it carries: 1, or more when changes were "
                         "made while it waited.")
    status: Literal["pending", "retrying", "applied", "failed", "superseded"]
    attempts: int
    next_attempt_at: datetime | None = Field(
        description="When a pending or retrying deployment is tried next; null when the server has no agent.")
    last_error: dict | None = Field(description="`code`, `detail`, and from the agent `step`, `daemon`, `message`.")
    applied_at: datetime | None
    failed_names: list[FailedName] = Field(
        [], description="Applied, except these names, which keep what they served before."
    )
    created_at: datetime
    updated_at: datetime


class DeploymentDetail(DeploymentOut):
    history: list[AttemptOut]


class DeploymentPage(Page[DeploymentOut]):
    """A page of a server's deployments, newest generation first."""


class DesiredConfigOut(BaseModel):
    """What the server should serve; fingerprints and host names only, never keys."""

    generation: int
    applied_generation: int
    server_hostname: str
    server_certificate: str
    webmail_default: str
    mail: dict[str, str]
    webmail: dict[str, str]
    certificates: dict[str, str] = Field(description="fingerprint -> certificate id")
