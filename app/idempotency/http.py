"""``Idempotency-Key`` on the creating POSTs, once for every route (draft-ietf-httpapi-idempotency-key-header).

A route opts in with ``dependencies=[IDEMPOTENT]`` on a router whose ``route_class`` is
``IdempotentRoute``. A request without the header runs as before. With it:

1. ``idempotency`` (a dependency, before the handler) fingerprints the request (method, path,
   body: JSON canonicalised, multipart by field) and claims (caller's scope, key) in a short
   transaction of its own, committed at once so that a concurrent retry sees it:
   - new key: claimed for this request, which runs;
   - same key, same fingerprint, response stored: that response is replayed (status, body,
     ``Location``, ``ETag``), nothing runs, with ``Idempotent-Replayed: true``;
   - same key, same fingerprint, still running: 409 ``idempotency_key_in_flight`` (retry later);
   - same key, another fingerprint: 422 ``idempotency_key_reused``;
   - same key, same fingerprint, response stored but sealed under another master key (the key
     file was replaced; app/kit/crypto.py refuses it): 409 ``idempotency_response_unreadable``,
     with the stored ``location`` of what the first request created. The request is not run
     again (that would create a second resource, the one thing the key exists to prevent), and
     the record stays, so every retry within the 24 hours gets the same answer.
2. ``IdempotentRoute`` stores the handler's 2xx response on the claimed row in the request's
   own transaction, the one that created the resource, before ``get_session`` commits it: the
   creation and its stored response commit together or not at all.
3. A request that fails (any error, or a non-2xx answer) releases its claim after its
   transaction rolled back, so the key can be retried; a process that dies leaves a claim that
   another request takes over once its lease (``LEASE``) runs out.

The scope is the caller: a customer's account (all its tokens), an admin's own token, so one
tenant's key never replays another's response. Keys live ``TTL`` (24 hours) from first use.
The stored body is sealed with the master key (AES-256-GCM, the row id as associated data,
app/kit/crypto.py) like private keys: token and server creations return secrets (the token),
and no response is kept in the clear. Only a SHA-256 of the request is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from app.accounts.caller import Caller
from app.context import AppContext
from app.db import new_id
from app.deps import Context, CurrentCaller, Session
from app.idempotency.repository import IdempotencyRepository
from app.kit.crypto import DecryptionError, Sealed
from app.kit.time import utc_now
from app.problems import Conflict, RuleViolation

log = logging.getLogger("certpost")

TTL = timedelta(hours=24)
LEASE = timedelta(seconds=60)
REPLAYED_HEADERS = ("location", "etag", "content-type")
STATE = "idempotency"


class IdempotencyKeyReused(RuleViolation):
    """The ``Idempotency-Key`` was used in the last 24 hours for another request (another method,
    path or body): make a new key for a new request (draft-ietf-httpapi-idempotency-key-header)."""

    code, title = "idempotency_key_reused", "This Idempotency-Key was used for another request"


class IdempotencyKeyInFlight(Conflict):
    """The first request with this ``Idempotency-Key`` is still running: retry after
    ``Retry-After`` seconds to get its response (draft-ietf-httpapi-idempotency-key-header)."""

    code, title = "idempotency_key_in_flight", "A request with this Idempotency-Key is still being processed"
    retry_after = 1


class IdempotencyResponseUnreadable(Conflict):
    """The first request with this ``Idempotency-Key`` succeeded, but its stored response was
    sealed under a master key this controller no longer has, so it cannot be replayed. It is not
    run again (that would create a second resource): look up what it created (``location``, when
    it made one) or, to create anew, send a new key."""

    code, title = "idempotency_response_unreadable", "The stored response to this Idempotency-Key cannot be read"
    extensions = ("location",)


class _Replay(Exception):
    """Raised by the dependency, turned into the stored response by ``IdempotentRoute``."""

    def __init__(self, response: Response):
        self.response = response


def scope_of(caller: Caller) -> str:
    """Whose keys: a customer's account (its tokens share them), else the admin's own token."""
    return f"account:{caller.account_id}" if caller.account_id else f"token:{caller.token_id}"


async def fingerprint(request: Request) -> str:
    """SHA-256 of what makes two requests "the same": method, path and body. JSON is compared
    as data (key order and spacing do not count); multipart by field name and content."""
    digest = hashlib.sha256(f"{request.method}\0{request.url.path}\0".encode())
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()  # already parsed by FastAPI: cached
        for name, value in sorted(form.multi_items(), key=lambda item: item[0]):
            digest.update(name.encode() + b"\0")
            if isinstance(value, UploadFile):
                await value.seek(0)
                digest.update(hashlib.sha256(await value.read()).digest())
                await value.seek(0)
            else:
                digest.update(hashlib.sha256(value.encode()).digest())
        return digest.hexdigest()
    body = await request.body()
    try:
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        pass
    digest.update(body)
    return digest.hexdigest()


@dataclass
class Claim:
    """This request's hold on its key, until its response is stored or it is released."""

    row_id: str
    owner: str
    session: AsyncSession  # the request's own: the response is stored in its transaction
    ctx: AppContext
    finished: bool = False

    async def store(self, response: Response) -> None:
        headers = {k: v for k, v in response.headers.items() if k.lower() in REPLAYED_HEADERS}
        sealed = self.ctx.master_key.seal(bytes(response.body), self.row_id)
        stored = await IdempotencyRepository(self.session).store(
            self.row_id, self.owner, response.status_code, headers,
            sealed.ciphertext, sealed.wrapped_key, sealed.master_key_id,
        )
        if not stored:
            raise IdempotencyKeyInFlight("the key was taken over by a retry while this request ran; retry it")
        self.finished = True


async def _release(ctx: AppContext, claim: Claim) -> None:
    async with ctx.sessionmaker() as session:
        await IdempotencyRepository(session).release(claim.row_id, claim.owner)
        await session.commit()


async def _release_unfinished(request: Request, ctx: Context) -> AsyncIterator[None]:
    """Request-scoped, so it ends after the request's transaction did (committed or rolled
    back): releasing earlier would wait on that transaction's SQLite write lock."""
    try:
        yield
    finally:
        claim: Claim | None = getattr(request.state, STATE, None)
        if claim is not None and not claim.finished:
            with contextlib.suppress(Exception):
                await _release(ctx, claim)


KEY_DESCRIPTION = (
    "Optional. A unique value (a UUID) the client makes for one creation and sends again on every retry "
    "of it: the first response is stored for 24 hours and replayed, so a retry creates nothing twice. "
    "Scoped to the caller (a customer's account, an admin's token). Stored responses are sealed with the "
    "controller's master key: after the key file was replaced, a retry of a request that succeeded before "
    "gets 409 `idempotency_response_unreadable` (with `location`, what it created) instead of a replay, and "
    "is not run again."
)


async def idempotency(
    request: Request,
    caller: CurrentCaller,
    session: Session,
    ctx: Context,
    _release_guard: Annotated[None, Depends(_release_unfinished, scope="request")],
    key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                      description=KEY_DESCRIPTION,
                                      examples=["8e03978e-40d5-43e8-bc93-6894a57f9324"])] = None,
) -> None:
    if key is None:
        return
    if not isinstance(request.scope.get("route"), IdempotentRoute):
        raise TypeError("Idempotency-Key needs the router's route_class=IdempotentRoute")
    owner = new_id()
    now = utc_now()
    async with ctx.sessionmaker() as claim_session:
        claimed = await IdempotencyRepository(claim_session).claim(
            scope_of(caller), key, await fingerprint(request), owner, now, LEASE, TTL)
        await claim_session.commit()
    if claimed.outcome == "reused":
        raise IdempotencyKeyReused("this Idempotency-Key was sent with another request (method, path or body); "
                                   "use a new key for a new request")
    if claimed.outcome == "in_flight":
        raise IdempotencyKeyInFlight("the first request with this Idempotency-Key has not finished; retry shortly")
    if claimed.outcome == "stored":
        row = claimed.row
        try:
            body = ctx.master_key.open(Sealed(row.body_ciphertext, row.body_wrapped, row.master_key_id), row.id)
        except DecryptionError:
            location = row.headers.get("location")
            log.warning("idempotency record %s: stored response does not open with master key %s (sealed "
                        "under %s); answered 409", row.id, ctx.master_key.id, row.master_key_id)
            raise IdempotencyResponseUnreadable(
                "the first request with this Idempotency-Key succeeded, but its stored response was sealed under "
                "another master key and cannot be replayed; it is not run again"
                + (f": what it created is at {location}" if location else "")
                + ". Use a new key to make a new request", location=location) from None
        headers = {**row.headers, "Idempotent-Replayed": "true"}
        raise _Replay(Response(content=body, status_code=row.status, headers=headers))
    setattr(request.state, STATE, Claim(claimed.row_id, owner, session, ctx))


IDEMPOTENT = Depends(idempotency, scope="function")


class IdempotentRoute(APIRoute):
    """Stores a claimed request's 2xx response before the request's transaction commits, and
    answers a replay (see the module's docstring)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except _Replay as replay:
                return replay.response
            claim: Claim | None = getattr(request.state, STATE, None)
            if claim is not None and 200 <= response.status_code < 300:
                await claim.store(response)
            return response

        return run
