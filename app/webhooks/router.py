"""HTTP for webhooks: create (the secret shown once), list, get, change, delete, deliveries, redeliver."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from app.accounts.service import UnknownAccount
from app.deps import Context, CurrentCaller, Session
from app.idempotency.http import IDEMPOTENT, IdempotentRoute
from app.outbound import OutboundGuard
from app.paging import InvalidCursor, PageParams
from app.problems import Forbidden, NotFound, responses
from app.webhooks.errors import (
    InvalidWebhookUrl,
    UnknownEventKind,
    WebhookDisabled,
    WebhookTargetNotAllowed,
)
from app.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
from app.webhooks.repository import WebhookRepository
from app.webhooks.schemas import (
    AttemptOut,
    DeliveryOut,
    DeliveryPage,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
)
from app.webhooks.service import WebhookService

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=IdempotentRoute)


async def get_service(session: Session, ctx: Context) -> WebhookService:
    return WebhookService(WebhookRepository(session), ctx.master_key, OutboundGuard.for_webhooks(ctx.settings))


Service = Annotated[WebhookService, Depends(get_service)]
URL_ERRORS = (InvalidWebhookUrl, WebhookTargetNotAllowed, UnknownEventKind)


def webhook_out(row: Webhook) -> dict:
    return {"id": row.id, "account_id": row.account_id, "url": row.url, "description": row.description, "kinds": row.kinds,
                "enabled": row.enabled, "disabled_reason": row.disabled_reason, "failing_since": row.failing_since,
                "consecutive_failures": row.consecutive_failures, "created_at": row.created_at, "updated_at": row.updated_at}


def delivery_out(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=row.id, webhook_id=row.webhook_id, event_id=row.event_id, event_kind=row.event_kind, status=row.status,
        attempts=row.attempts, next_attempt_at=row.next_attempt_at, last_status_code=row.last_status_code,
        last_error=row.last_error, delivered_at=row.delivered_at, created_at=row.created_at,
        attempt_log=[AttemptOut(attempt=a.attempt, at=a.at, status_code=a.status_code, error=a.error,
                                duration_ms=a.duration_ms, redelivery=a.redelivery) for a in attempts],
    )


@router.post("", operation_id="createWebhook", response_description="The webhook, with its signing secret (shown once)",
             summary="Subscribe a URL to events", status_code=201, response_model=WebhookCreated,
             dependencies=[IDEMPOTENT], responses=responses(Forbidden, UnknownAccount, *URL_ERRORS))
async def create_webhook(body: WebhookCreate, caller: CurrentCaller, service: Service, response: Response):
    """Create a webhook: the worker POSTs each new event of `kinds` to `url`, signed as Standard
    Webhooks 1.0 defines (`webhook-id`, `webhook-timestamp`, `webhook-signature`; docs/webhooks.md).

    The answer carries the signing `secret` (`whsec_...`) this once; it is stored encrypted and
    never shown again. A customer's webhook receives its own account's events only and must be
    `https` to public addresses on port 443 (422 `webhook_target_not_allowed`); an admin's may
    reach any address (a receiver on loopback or the private network)."""
    row, secret = await service.create(caller, body)
    response.headers["Location"] = f"/v1/webhooks/{row.id}"
    return WebhookCreated(**webhook_out(row), secret=secret)


@router.get("", operation_id="listWebhooks", response_description="A page of webhooks", summary="List webhooks",
            response_model=WebhookPage, responses=responses(InvalidCursor))
async def list_webhooks(caller: CurrentCaller, service: Service, page: PageParams,
                        account_id: Annotated[str | None, Query(
                            description="Only webhooks of this account. A customer naming another account gets "
                            "an empty list.")] = None):
    """Webhooks, oldest first. A customer sees the webhooks created with its token(s); never a secret."""
    window = await service.list(caller, account_id, page)
    return WebhookPage.of(window, [WebhookOut(**webhook_out(r)) for r in window.rows])


@router.get("/{webhook_id}", operation_id="getWebhook", response_description="The webhook (without its secret)",
            summary="Get a webhook", response_model=WebhookOut, responses=responses(NotFound))
async def get_webhook(webhook_id: str, caller: CurrentCaller, service: Service):
    """One webhook, without its secret, with whether it is enabled and how it has been failing."""
    return WebhookOut(**webhook_out(await service.get(caller, webhook_id)))


@router.patch("/{webhook_id}", operation_id="patchWebhook", response_description="The webhook, changed",
              summary="Change a webhook", response_model=WebhookOut, responses=responses(NotFound, *URL_ERRORS))
async def patch_webhook(webhook_id: str, body: WebhookPatch, caller: CurrentCaller, service: Service):
    """Change the URL (checked as on creation), the kinds, the description, or enable/disable it.

    Enabling clears a disable for failures; deliveries still waiting are then tried again."""
    row = await service.patch(caller, webhook_id, body.model_dump(exclude_unset=True))
    return WebhookOut(**webhook_out(row))


@router.delete("/{webhook_id}", operation_id="deleteWebhook", response_description="Deleted", summary="Delete a webhook",
               status_code=204, responses=responses(NotFound))
async def delete_webhook(webhook_id: str, caller: CurrentCaller, service: Service):
    """Delete a webhook with its delivery log; nothing more is sent to it."""
    await service.delete(caller, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", operation_id="listWebhookDeliveries",
            response_description="A page of deliveries, each with its attempts", summary="List a webhook's deliveries",
            response_model=DeliveryPage, responses=responses(NotFound, InvalidCursor))
async def list_deliveries(webhook_id: str, caller: CurrentCaller, service: Service, page: PageParams,
                          status: Annotated[Literal["pending", "retrying", "delivered", "failed"] | None, Query(
                              description="Only deliveries in this state.")] = None):
    """Deliveries, newest event first, each with every attempt: HTTP status, error, duration and
    attempt number."""
    window, attempts = await service.deliveries(caller, webhook_id, status, page)
    return DeliveryPage.of(window, [delivery_out(d, attempts.get(d.id, [])) for d in window.rows])


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", operation_id="redeliverWebhookDelivery",
             response_description="The delivery, due now", summary="Send a delivery again", status_code=202,
             response_model=DeliveryOut, responses=responses(NotFound, WebhookDisabled))
async def redeliver(webhook_id: str, delivery_id: str, caller: CurrentCaller, service: Service,
                    response: Response):
    """Queue one more attempt of a delivery now, with the same `webhook-id` (a receiver that
    deduplicates by it sees a repeat). The worker sends it within a poll; follow `Location`."""
    row = await service.redeliver(caller, webhook_id, delivery_id)
    response.headers["Location"] = f"/v1/webhooks/{webhook_id}/deliveries"
    return delivery_out(row, await service.attempts_of(row))
