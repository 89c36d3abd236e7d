"""Webhook rules on the API side: who may create which, where it may point, the secret shown once.

A customer's webhook belongs to its account and receives that account's events only (the
worker filters on ``account_id``); an admin's may name an account or none (every event). The
URL rules and the outbound guard are in ``targets.py``. The signing secret is generated here,
sealed with the master key under the row's id, and returned to the router once; nothing reads it
back in the clear but the worker.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import and_

from app.accounts.caller import Caller
from app.accounts.models import Account
from app.accounts.service import UnknownAccount
from app.db import new_id, record_worker_work
from app.events import EventKind, record
from app.kit.crypto import MasterKey, Sealed
from app.kit.outbound import OutboundPolicy, OutboundRefused
from app.kit.time import utc_now
from app.outbound import HTTPS_PORT, RESOLVE_TIMEOUT, OutboundGuard
from app.paging import PageRequest, Window
from app.problems import NotFound
from app.webhooks import feed, signing, targets
from app.webhooks.errors import (
    InvalidWebhookUrl,
    UnknownEventKind,
    WebhookDisabled,
    WebhookTargetNotAllowed,
)
from app.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
from app.webhooks.repository import WebhookRepository
from app.webhooks.schemas import WebhookCreate

TARGET_RULE = "a customer's webhook must be https on port 443 to a host whose every address is public"


def webhook_secret(master_key: MasterKey, row: Webhook) -> str:
    """The signing secret, unsealed for the worker's use only."""
    return master_key.open(Sealed(row.secret_ciphertext, row.secret_wrapped, row.master_key_id), row.id).decode()


def shown_url(url: str) -> str:
    """``url`` as events show it: without user information or query, either of which may carry a
    credential for the receiver (RFC 3986 section 3.2.1 deprecates ``user:password@``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _event(session, kind: EventKind, caller: Caller, row: Webhook, data: dict) -> None:
    # An administrator's webhook (which may point at internal addresses, and which customers do
    # not see) is the platform's event, even when it follows one account's events.
    record(session, kind, caller, account_id=None if row.admin_owned else row.account_id,
           subjects={"webhook": row.id}, data={"url": shown_url(row.url), **data})


def guarded(row: Webhook) -> bool:
    """A webhook a customer created goes through the outbound guard at every attempt; one an
    admin created (for the platform or for an account) is operator configuration and does not."""
    return not row.admin_owned


class WebhookService:
    def __init__(self, repo: WebhookRepository, master_key: MasterKey, guard: OutboundGuard | None = None):
        self.repo = repo
        self.master_key = master_key
        self.guard = guard or OutboundGuard(OutboundPolicy(ports=frozenset({HTTPS_PORT})))

    async def _check_url(self, url: str, *, guard: bool) -> str:
        """``guard``: the customer's rule (https, 443, public addresses) applies; it follows the
        webhook (``guarded``), not the caller, so an admin editing a customer's webhook cannot
        store a URL its every attempt would then refuse."""
        try:
            targets.parse(url, guarded=guard)
        except targets.BadUrl as exc:
            raise InvalidWebhookUrl(str(exc)) from None
        if guard:
            try:
                await asyncio.wait_for(asyncio.to_thread(targets.resolve, url, self.guard), RESOLVE_TIMEOUT + 1)
            except (OutboundRefused, TimeoutError):
                # A customer learns that the target is refused, not what its name resolved to.
                raise WebhookTargetNotAllowed(TARGET_RULE) from None
        return url

    @staticmethod
    def _check_kinds(kinds: list[str]) -> list[str]:
        known = feed.known_kinds()
        for kind in kinds:
            if kind not in known:
                raise UnknownEventKind(f"{kind[:100]!r} is not an event kind", kind=kind[:100])
        return list(dict.fromkeys(kinds))

    async def create(self, caller: Caller, body: WebhookCreate) -> tuple[Webhook, str]:
        """The new webhook and its secret (for the 201 answer only). It receives events recorded
        from now on."""
        owner = caller.owner_for_new(body.account_id)
        if owner is not None and await self.repo.session.get(Account, owner) is None:
            raise UnknownAccount(f"account {owner} not found")
        kinds = self._check_kinds(body.kinds)
        url = await self._check_url(body.url, guard=not caller.is_admin)
        secret = signing.new_secret()
        row = Webhook(id=new_id(), account_id=owner, admin_owned=caller.is_admin, url=url,
                      description=body.description, kinds=kinds, enabled=True,
                      after_event_id=await feed.last_event_id(self.repo.session),
                      consecutive_failures=0, secret_ciphertext=b"", secret_wrapped=b"", master_key_id="")
        sealed = self.master_key.seal(secret.encode(), row.id)
        row.secret_ciphertext, row.secret_wrapped, row.master_key_id = (
            sealed.ciphertext, sealed.wrapped_key, sealed.master_key_id)
        await self.repo.add(row)
        _event(self.repo.session, EventKind.WEBHOOK_CREATED, caller, row,
               {"kinds": kinds, "description": body.description})
        return row, secret

    async def list(self, caller: Caller, account_id: str | None, page: PageRequest) -> Window[Webhook]:
        visible = caller.visible_rows(Webhook.account_id, requested=account_id)
        if not caller.is_admin:
            visible = and_(visible, Webhook.admin_owned.is_(False))
        return await self.repo.webhooks(visible, page)

    async def get(self, caller: Caller, webhook_id: str) -> Webhook:
        row = await self.repo.webhook(webhook_id)
        # Customers see the webhooks they created for their account; an admin's (which may point
        # at internal addresses) stays the operator's, even when it follows a customer's events.
        if row is not None and row.admin_owned and not caller.is_admin:
            row = None
        return caller.visible(row, "webhook")

    async def patch(self, caller: Caller, webhook_id: str, changes: dict) -> Webhook:
        row = await self.get(caller, webhook_id)
        before = {"url": row.url, "kinds": list(row.kinds), "description": row.description, "enabled": row.enabled}
        if changes.get("url") is not None:
            row.url = await self._check_url(changes["url"], guard=guarded(row))
        if changes.get("kinds") is not None:
            row.kinds = self._check_kinds(changes["kinds"])
        if "description" in changes:
            row.description = changes["description"]
        if changes.get("enabled") is True and not row.enabled:
            row.enabled, row.disabled_reason = True, None
            row.failing_since, row.consecutive_failures = None, 0
            record_worker_work(self.repo.session)
        elif changes.get("enabled") is False and row.enabled:
            row.enabled, row.disabled_reason = False, "manual"
        after = {"url": row.url, "kinds": list(row.kinds), "description": row.description, "enabled": row.enabled}
        changed = [field for field in before if before[field] != after[field]]
        if changed:  # a PATCH that changes nothing records nothing
            _event(self.repo.session, EventKind.WEBHOOK_CHANGED, caller, row,
                   {"changed": changed, "enabled": row.enabled, "kinds": list(row.kinds)})
        row.updated_at = utc_now()
        await self.repo.session.flush()
        return row

    async def delete(self, caller: Caller, webhook_id: str) -> None:
        row = await self.get(caller, webhook_id)
        await self.repo.delete(row)
        _event(self.repo.session, EventKind.WEBHOOK_DELETED, caller, row, {})

    async def deliveries(self, caller: Caller, webhook_id: str, status: str | None, page: PageRequest):
        await self.get(caller, webhook_id)
        window = await self.repo.deliveries(webhook_id, status, page)
        return window, await self.repo.attempts([d.id for d in window.rows])

    async def delivery(self, caller: Caller, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        await self.get(caller, webhook_id)
        row = await self.repo.delivery(webhook_id, delivery_id)
        if row is None:
            raise NotFound("delivery not found")
        return row

    async def attempts_of(self, delivery: WebhookDelivery) -> list[WebhookAttempt]:
        return (await self.repo.attempts([delivery.id])).get(delivery.id, [])

    async def redeliver(self, caller: Caller, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivery once more, now, with the same ``webhook-id`` (the receiver may deduplicate).

        A redelivery is one attempt: if it fails, a delivery that had already succeeded or failed
        goes back to that state's terminal form (``failed``), one still being retried keeps its schedule.
        """
        webhook = await self.get(caller, webhook_id)
        if not webhook.enabled:
            raise WebhookDisabled("enable the webhook first")
        row = await self.delivery(caller, webhook_id, delivery_id)
        row.redelivery = row.status in ("delivered", "failed")
        row.status = "pending" if row.status in ("delivered", "failed", "pending") else row.status
        row.next_attempt_at = utc_now()
        await self.repo.session.flush()
        record_worker_work(self.repo.session)
        return row
