"""Request and response bodies of the webhook routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.paging import Page
from app.schemas import DisplayName, Strict

WEBHOOK_ID = "4c3b2a19-8f7e-4d6c-9b5a-3f2e1d0c9b8a"
DELIVERY_ID = "b1a2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
URL = "https://panel.example.net/hooks/certpost"
KINDS = ["certificate.expiring", "certificate.expired"]

Kinds = list[str]


class WebhookCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"url": URL, "kinds": KINDS}]})

    url: str = Field(min_length=1, max_length=2000, description="Where to POST events. A customer's: `https`, "
                     "port 443, a host whose every address is public (422 `webhook_target_not_allowed`); an "
                     "admin's may be `http` and reach any address.", examples=[URL])
    kinds: Kinds = Field(min_length=1, max_length=100, description="The event kinds to receive (`GET /v1/events` "
                         "lists what each means).", examples=[KINDS])
    account_id: str | None = Field(None, description="Admins: only this account's events (default: every event). "
                                   "A customer's webhook always gets its own account's events only.",
                                   examples=[None])
    description: DisplayName | None = Field(None, description="A note for people.", examples=["panel"])


class WebhookPatch(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": True}]})

    url: str | None = Field(None, min_length=1, max_length=2000, description="A new URL (same rules as on creation).",
                            examples=[URL])
    kinds: Kinds | None = Field(None, min_length=1, max_length=100, description="The new set of event kinds.",
                                examples=[KINDS])
    enabled: bool | None = Field(None, description="`false` stops deliveries (they wait); `true` resumes them and "
                                 "clears a disable for failures.", examples=[True])
    description: DisplayName | None = Field(None, description="A note for people.", examples=["panel"])


_WEBHOOK = {
    "id": WEBHOOK_ID, "account_id": ex.ACCOUNT_ID, "url": URL, "description": "panel", "kinds": KINDS,
    "enabled": True, "disabled_reason": None, "failing_since": None, "consecutive_failures": 0,
    "created_at": ex.CREATED, "updated_at": ex.CREATED,
}
SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class WebhookOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_WEBHOOK]})

    id: str = Field(description="The webhook's id.", examples=[WEBHOOK_ID])
    account_id: str | None = Field(description="Whose events it receives; null: every account's (admins only).",
                                   examples=[ex.ACCOUNT_ID])
    url: str = Field(description="Where events are POSTed.", examples=[URL])
    description: str | None = Field(description="A note for people.", examples=["panel"])
    kinds: list[str] = Field(description="The event kinds it receives.", examples=[KINDS])
    enabled: bool = Field(description="Whether events are delivered.", examples=[True])
    disabled_reason: Literal["manual", "failing", "gone"] | None = Field(
        description="Why it is disabled: `manual` (PATCH), `failing` (every attempt failed for "
        "`CERTPOST_WEBHOOK_DISABLE_AFTER_SECONDS`), `gone` (the receiver answered 410).", examples=[None])
    failing_since: datetime | None = Field(description="The first failed attempt since the last success.",
                                           examples=[None])
    consecutive_failures: int = Field(description="Failed attempts since the last success.", examples=[0])
    created_at: datetime = Field(description="When it was created (UTC).", examples=[ex.CREATED])
    updated_at: datetime = Field(description="When it last changed (UTC).", examples=[ex.CREATED])


class WebhookCreated(WebhookOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{**_WEBHOOK, "secret": SECRET_EXAMPLE}]})

    secret: str = Field(description="The signing secret (`whsec_` + base64), shown this once: verify "
                        "`webhook-signature` with it (docs/webhooks.md).", examples=[SECRET_EXAMPLE])


class WebhookPage(Page[WebhookOut]):
    """A page of webhooks, oldest first."""

    model_config = ex.page(_WEBHOOK, None)


class AttemptOut(BaseModel):
    attempt: int = Field(description="1 for the first attempt, counting redeliveries.", examples=[1])
    at: datetime = Field(description="When it was made (UTC).", examples=[ex.CREATED])
    status_code: int | None = Field(description="The receiver's HTTP status; null when none came.", examples=[500])
    error: str | None = Field(description="Why it failed (`HTTP 500`, `timed out after 15 s` ...); null on success.",
                              examples=["HTTP 500"])
    duration_ms: int = Field(description="How long it took.", examples=[42])
    redelivery: bool = Field(description="Made on request (`redeliverWebhookDelivery`).", examples=[False])


_DELIVERY = {
    "id": DELIVERY_ID, "webhook_id": WEBHOOK_ID, "event_id": 1042, "event_kind": "certificate.expiring",
    "status": "retrying", "attempts": 1, "next_attempt_at": ex.CREATED, "last_status_code": 500,
    "last_error": "HTTP 500", "delivered_at": None, "created_at": ex.CREATED,
    "attempt_log": [{"attempt": 1, "at": ex.CREATED, "status_code": 500, "error": "HTTP 500", "duration_ms": 42,
                     "redelivery": False}],
}


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY]})

    id: str = Field(description="The delivery's id: the `webhook-id` header of each of its attempts.",
                    examples=[DELIVERY_ID])
    webhook_id: str = Field(description="The webhook.", examples=[WEBHOOK_ID])
    event_id: int = Field(description="The event delivered (`GET /v1/events`).", examples=[1042])
    event_kind: str = Field(description="Its kind.", examples=["certificate.expiring"])
    status: Literal["pending", "retrying", "delivered", "failed"] = Field(
        description="`pending` (not tried yet), `retrying` (failed, tried again at `next_attempt_at`), "
        "`delivered` (a 2xx), `failed` (retries spent). A disabled webhook's deliveries wait and go out once "
        "it is enabled again.", examples=["retrying"])
    attempts: int = Field(description="Attempts made.", examples=[1])
    next_attempt_at: datetime | None = Field(description="When it is tried next; null when done.",
                                             examples=[ex.CREATED])
    last_status_code: int | None = Field(description="The last attempt's HTTP status.", examples=[500])
    last_error: str | None = Field(description="The last attempt's error.", examples=["HTTP 500"])
    delivered_at: datetime | None = Field(description="When a 2xx came.", examples=[None])
    created_at: datetime = Field(description="When the event was queued for this webhook.", examples=[ex.CREATED])
    attempt_log: list[AttemptOut] = Field(description="Every attempt, oldest first.")


class DeliveryPage(Page[DeliveryOut]):
    """A page of deliveries, newest event first."""

    model_config = ex.page(_DELIVERY, None)
