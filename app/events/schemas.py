"""The event as the API shows it, with one example per kind (app/events/kinds.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.events.kinds import KINDS, EventKind
from app.paging import Page

_ACTORS = {
    "token": {"type": "token", "id": ex.TOKEN_ID, "role": "customer"},
    "worker": {"type": "worker", "id": "mx-controller:4242:9f1c2a7b", "role": None},
    "enrolment": {"type": "enrolment", "id": ex.TOKEN_ID, "role": None},
}
_WORKER_KINDS = {
    EventKind.ORDER_VALID, EventKind.ORDER_INVALID, EventKind.RENEWAL_SCHEDULED, EventKind.RENEWAL_FAILED,
    EventKind.RENEWAL_SUCCEEDED, EventKind.DEPLOYMENT_APPLIED, EventKind.DEPLOYMENT_FAILED,
    EventKind.DEPLOYMENT_SUPERSEDED, EventKind.CERTIFICATE_EXPIRING, EventKind.CERTIFICATE_EXPIRED,
    EventKind.DRIFT_DETECTED, EventKind.WEBHOOK_DISABLED,
}
_PLATFORM_KINDS = {EventKind.SERVER_MAIL_CERTIFICATE_CHANGED, EventKind.SERVER_WEBMAIL_CERTIFICATE_CHANGED,
                   EventKind.DEPLOYMENT_APPLIED, EventKind.DEPLOYMENT_FAILED, EventKind.DEPLOYMENT_SUPERSEDED,
                   EventKind.ENROLMENT_TOKEN_CREATED, EventKind.ENROLMENT_TOKEN_DELETED, EventKind.AGENT_ENROLLED}


def example(kind: EventKind, number: int = 1) -> dict[str, Any]:
    info = KINDS[kind]
    return {
        "id": number, "kind": kind.value, "occurred_at": ex.CREATED,
        "actor": _ACTORS["worker" if kind in _WORKER_KINDS
                         else "enrolment" if kind is EventKind.AGENT_ENROLLED else "token"],
        "account_id": None if kind in _PLATFORM_KINDS else ex.ACCOUNT_ID,
        "subjects": info.subjects, "data": info.data,
    }


EXAMPLES = [example(kind, i) for i, kind in enumerate(EventKind, start=1)]

KIND_DOCS = "\n".join(f"- `{kind.value}`: {info.description}" for kind, info in KINDS.items())


class ActorOut(BaseModel):
    type: Literal["token", "worker", "operator", "enrolment"] = Field(
        description="`token`: an API token made the change; `worker`: the controller's worker, on its own; "
        "`operator`: the `certpost` command on the controller's host; `enrolment`: an agent presenting a "
        "one-time enrolment token.", examples=["token"])
    id: str = Field(description="The token's id (never its secret), the worker's id (host:pid:random), `cli`, "
                    "or the enrolment token's id.", examples=[ex.TOKEN_ID])
    role: Literal["admin", "customer"] | None = Field(description="The token's role; null for the others.",
                                                      examples=["customer"])


class EventOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": EXAMPLES})

    id: int = Field(description="Increasing: a later event has a greater id, and ids become visible in "
                    "increasing order, so `id > last seen` finds every newer one. Gaps are normal.", examples=[1])
    kind: str = Field(description="What happened:\n" + KIND_DOCS,
                      json_schema_extra={"enum": [k.value for k in EventKind]}, examples=["binding.set"])
    occurred_at: datetime = Field(description="When the change was made (UTC; committed with it).",
                                  examples=[ex.CREATED])
    actor: ActorOut = Field(description="Who made the change.")
    account_id: str | None = Field(description="The account the change concerns; null for the platform's own "
                                   "(servers, server-level certificates, deployments), which only admins see.",
                                   examples=[ex.ACCOUNT_ID])
    subjects: dict[str, str] = Field(description="What the event is about: role -> id (`certificate`, `domain` "
                                     "(its name), `server`, `order`, `deployment`, `token`, `webhook`, `enrolment_token`, "
                                     "`certificate_request`, `dns_provider`). Each id also "
                                     "matches the `subject` filter.",
                                     examples=[{"certificate": ex.CERTIFICATE_ID}])
    data: dict[str, Any] = Field(description="The facts a consumer needs, per kind (see the examples): names, "
                                 "fingerprints, generations, and for failures a `condition` "
                                 "(`code`, `message`, `step`, `at`). Never key material.",
                                 examples=[KINDS[EventKind.CERTIFICATE_UPLOADED].data])


class EventPage(Page[EventOut]):
    """A page of events, oldest first (by `id`)."""

    model_config = ex.page(EXAMPLES[0], ex.cursor("events", 1))
