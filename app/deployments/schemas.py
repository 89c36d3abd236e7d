from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class AttemptOut(BaseModel):
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: dict | None
    bytes_sent: int


class DeploymentOut(BaseModel):
    id: str
    server_id: str
    generation: int
    reason: str
    status: Literal["pending", "retrying", "applied", "failed", "superseded"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending or retrying deployment is tried next.")
    last_error: dict | None = Field(description="`code`, `detail`, and from the agent `step`, `daemon`, `message`.")
    applied_at: datetime | None
    created_at: datetime
    updated_at: datetime


class DeploymentDetail(DeploymentOut):
    history: list[AttemptOut]


class DeploymentPage(BaseModel):
    items: list[DeploymentOut]
    next_cursor: int | None = Field(description="Pass as `before_generation` for older deployments.")


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
