from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.paging import Page
from app.schemas import Condition


class AttemptOut(BaseModel):
    started_at: datetime = Field(description="When the push began (UTC).", examples=[ex.CREATED])
    finished_at: datetime | None = Field(description="When it ended; null while it runs.", examples=[ex.UPDATED])
    outcome: str = Field(description="`applied`, `agent_ahead` (the agent already had a later generation) or "
                         "`failed`.", json_schema_extra={"enum": ["applied", "agent_ahead", "failed"]},
                         examples=["applied"])
    error: Condition | None = Field(description="With `failed`: `code`, `message`, `step` (the agent's), `at`, and "
                                    "in `details` the agent's HTTP `status`, `daemon`, `message`, `rolled_back`.",
                                    examples=[None])
    bytes_sent: int = Field(description="Size of the document sent to the agent.", examples=[18432])


class FailedName(BaseModel):
    """A name the agent held back on what it served before, and why (docs/agent.md)."""

    name: str = Field(description="`mail.<domain>` or `webmail.<domain>`.", examples=["mail.example.com"])
    service: Literal["mail", "webmail"] = Field(description="The service of the name.", examples=["mail"])
    fingerprint: str = Field(description="The certificate that could not be served.", examples=[ex.FINGERPRINT])
    code: str = Field(description="`invalid_bundle`, `key_refused`, `handshake_failed`, `verify_failed` or "
                      "`config_refused`.", examples=["key_refused"])
    message: str = Field(description="The agent's (OpenSSL's) words.",
                         examples=["SSL_CTX_use_PrivateKey: key values mismatch"])
    serving: str | None = Field(None, description="What the name is still served; null: the server default.",
                                examples=[None])


DEPLOYMENT_EXAMPLE = {
    "id": ex.DEPLOYMENT_ID, "server_id": ex.SERVER_ID, "generation": 42, "reason": "push requested",
    "changes": 1, "status": "applied", "attempts": 1, "next_attempt_at": None, "last_error": None,
    "applied_at": ex.UPDATED, "failed_names": [], "created_at": ex.CREATED, "updated_at": ex.UPDATED,
}


class DeploymentOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [DEPLOYMENT_EXAMPLE]})

    id: str = Field(description="The deployment's id.", examples=[ex.DEPLOYMENT_ID])
    server_id: str = Field(description="The server it deploys to.", examples=[ex.SERVER_ID])
    generation: int = Field(description="The server's desired generation this deployment delivers. While it "
                            "waits, a later change raises it in place (one waiting deployment per server).")
    reason: str = Field(description="What caused the latest change it carries.")
    changes: int = Field(description="How many changes (generations) it carries: 1, or more when changes were "
                         "made while it waited.")
    status: Literal["pending", "retrying", "applied", "failed", "superseded"] = Field(
        description="`pending` (not tried yet), `retrying` (after a failure), `applied`, `failed` (given up), "
        "`superseded` (a later generation replaced it).", examples=["applied"])
    attempts: int = Field(description="Pushes tried so far.", examples=[1])
    next_attempt_at: datetime | None = Field(
        description="When a pending or retrying deployment is tried next; null when the server has no agent.")
    last_error: Condition | None = Field(description="Why the last attempt failed: `code`, `message`, `step` (the "
                                         "agent's), `at`, and in `details` the agent's HTTP `status`, `daemon`, "
                                         "`message`, `rolled_back`.")
    applied_at: datetime | None = Field(description="When the agent applied it.", examples=[ex.UPDATED])
    failed_names: list[FailedName] = Field(
        [], description="Applied, except these names, which keep what they served before."
    )
    created_at: datetime = Field(description="When it was created (UTC).", examples=[ex.CREATED])
    updated_at: datetime = Field(description="When it last changed (UTC).", examples=[ex.UPDATED])


class DeploymentDetail(DeploymentOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{**DEPLOYMENT_EXAMPLE, "history": [{
        "started_at": ex.CREATED, "finished_at": ex.UPDATED, "outcome": "applied", "error": None,
        "bytes_sent": 18432}]}]})

    history: list[AttemptOut] = Field(description="Every push attempt, oldest first.")


class DeploymentPage(Page[DeploymentOut]):
    """A page of a server's deployments, newest generation first."""

    model_config = ex.page(DEPLOYMENT_EXAMPLE, ex.cursor("deployments", 41))


class DesiredConfigOut(BaseModel):
    """What the server should serve; fingerprints and host names only, never keys."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "generation": 42, "applied_generation": 41, "server_hostname": ex.SERVER_HOSTNAME,
        "server_certificate": ex.SERVER_FINGERPRINT, "webmail_default": ex.SERVER_FINGERPRINT,
        "mail": {"mail.example.com": ex.FINGERPRINT}, "webmail": {"webmail.example.com": ex.FINGERPRINT},
        "certificates": {ex.FINGERPRINT: ex.CERTIFICATE_ID, ex.SERVER_FINGERPRINT: ex.SERVER_CERTIFICATE_ID},
    }]})

    generation: int = Field(description="The desired generation this configuration is.", examples=[42])
    applied_generation: int = Field(description="The generation the agent last applied.", examples=[41])
    server_hostname: str = Field(description="The server's own host name.", examples=[ex.SERVER_HOSTNAME])
    server_certificate: str = Field(description="Fingerprint of the server-wide mail certificate.",
                                    examples=[ex.SERVER_FINGERPRINT])
    webmail_default: str = Field(description="Fingerprint of what webmail serves without a matching name.",
                                 examples=[ex.SERVER_FINGERPRINT])
    mail: dict[str, str] = Field(description="`mail.<domain>` -> certificate fingerprint, per-domain mail.",
                                 examples=[{"mail.example.com": ex.FINGERPRINT}])
    webmail: dict[str, str] = Field(description="`webmail.<domain>` -> certificate fingerprint.",
                                    examples=[{"webmail.example.com": ex.FINGERPRINT}])
    certificates: dict[str, str] = Field(description="fingerprint -> certificate id",
                                         examples=[{ex.FINGERPRINT: ex.CERTIFICATE_ID}])
