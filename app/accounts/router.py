"""HTTP for accounts and API tokens (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.accounts.repository import AccountRepository
from app.accounts.schemas import (
    AccountCreate,
    AccountOut,
    AccountPage,
    TokenCreate,
    TokenInfo,
    TokenOut,
    TokenPage,
)
from app.accounts.service import AccountExists, AccountService, UnknownAccount
from app.deps import Admin, Context, Session
from app.idempotency.http import IDEMPOTENT, IdempotentRoute
from app.paging import InvalidCursor, PageParams
from app.problems import Forbidden, NotFound, responses

router = APIRouter(prefix="/v1", tags=["accounts"], route_class=IdempotentRoute)


async def get_service(session: Session, ctx: Context) -> AccountService:
    return AccountService(AccountRepository(session), ctx.token_cache())


Accounts = Annotated[AccountService, Depends(get_service)]


@router.post("/accounts", operation_id="createAccount", response_description="The account, created",
    summary="Create a customer account",
    status_code=201, response_model=AccountOut, dependencies=[IDEMPOTENT],
    responses=responses(Forbidden, AccountExists))
async def create_account(body: AccountCreate, _admin: Admin, accounts: Accounts, response: Response):
    """Create a customer account; its name is unique (409 `account_exists`). Admin only."""
    account = await accounts.create_account(body.name)
    response.headers["Location"] = f"/v1/accounts/{account.id}"
    return account


@router.get("/accounts", operation_id="listAccounts", response_description="A page of accounts",
    summary="List customer accounts",
    response_model=AccountPage, responses=responses(Forbidden, InvalidCursor))
async def list_accounts(admin: Admin, accounts: Accounts, page: PageParams):
    """Customer accounts, oldest first (by `created_at`, then `id`). No filters. Admin only."""
    window = await accounts.list_accounts(admin, page)
    return AccountPage.of(window, [AccountOut.model_validate(a) for a in window.rows])


@router.post("/tokens", operation_id="createToken", response_description="The token, with its secret shown this once",
    summary="Create an API token",
    status_code=201, response_model=TokenOut, dependencies=[IDEMPOTENT],
    responses=responses(Forbidden, UnknownAccount))
async def create_token(body: TokenCreate, admin: Admin, accounts: Accounts, response: Response):
    """Create an API token. The secret is in `token`, shown this once (and to a retry with the same
    `Idempotency-Key` within 24 hours: that stored response is encrypted with the master key)."""
    row, text = await accounts.create_token(body.role, body.account_id, body.description, caller=admin)
    response.headers["Location"] = f"/v1/tokens/{row.id}"
    return TokenOut(id=row.id, role=row.role, account_id=row.account_id, description=row.description,
                    created_at=row.created_at, token=text)


@router.get("/tokens", operation_id="listTokens", response_description="A page of tokens, without secrets",
    summary="List API tokens",
    response_model=TokenPage, responses=responses(Forbidden, InvalidCursor))
async def list_tokens(admin: Admin, accounts: Accounts, page: PageParams,
                      account_id: Annotated[str | None, Query(description="Only this account's tokens.")] = None):
    """Tokens with their role, account and state, oldest first (by `created_at`, then `id`);
    revoked ones included (`revoked_at`). Secrets are never shown again."""
    window = await accounts.list_tokens(admin, account_id, page)
    return TokenPage.of(window, [TokenInfo.model_validate(t) for t in window.rows])


@router.delete("/tokens/{token_id}", operation_id="revokeToken", response_description="Revoked",
    summary="Revoke an API token", status_code=204, responses=responses(Forbidden, NotFound))
async def revoke_token(token_id: str, admin: Admin, accounts: Accounts):
    """Revoke a token: it is refused from now on (401 `unauthenticated`). Its row stays, with `revoked_at`. Admin only.

    Each `certpost serve` process remembers a token it authenticated for `token_cache_seconds`
    (default 5; `CERTPOST_TOKEN_CACHE_SECONDS`, 0 disables): the process that answers this
    request refuses the token at once, another process (a second instance behind the same
    database) within that many seconds."""
    await accounts.revoke_token(token_id, caller=admin)
    return Response(status_code=204)
