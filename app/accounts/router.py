"""HTTP for accounts and API tokens (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.accounts.repository import AccountRepository
from app.accounts.schemas import AccountCreate, AccountOut, TokenCreate, TokenInfo, TokenOut
from app.accounts.service import AccountExists, AccountService, UnknownAccount
from app.deps import Admin, Session
from app.problems import Forbidden, NotFound, responses
from app.schemas import Offset

router = APIRouter(prefix="/v1", tags=["accounts"])


async def get_service(session: Session) -> AccountService:
    return AccountService(AccountRepository(session))


Accounts = Annotated[AccountService, Depends(get_service)]


@router.post("/accounts", operation_id="createAccount", response_description="The account, created",
    summary="Create a customer account", status_code=201, response_model=AccountOut, responses=responses(Forbidden, AccountExists))
async def create_account(body: AccountCreate, _admin: Admin, accounts: Accounts):
    """Create a customer account; its name is unique (409 `account_exists`). Admin only."""
    return await accounts.create_account(body.name)


@router.get("/accounts", operation_id="listAccounts", response_description="The accounts",
    summary="List customer accounts", response_model=list[AccountOut], responses=responses(Forbidden))
async def list_accounts(_admin: Admin, accounts: Accounts,
                        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many rows (1 to 1000).")] = 100,
                        offset: Offset = 0):
    """Customer accounts, oldest first, with offset paging. Admin only."""
    return await accounts.repo.list_accounts(limit, offset)


@router.post("/tokens", operation_id="createToken", response_description="The token, with its secret shown this once",
    summary="Create an API token", status_code=201, response_model=TokenOut, responses=responses(Forbidden, UnknownAccount))
async def create_token(body: TokenCreate, _admin: Admin, accounts: Accounts):
    """Create an API token. The secret is in `token`, shown this once."""
    row, text = await accounts.create_token(body.role, body.account_id, body.description)
    return TokenOut(id=row.id, role=row.role, account_id=row.account_id, description=row.description,
                    created_at=row.created_at, token=text)


@router.get("/tokens", operation_id="listTokens", response_description="The tokens, without secrets",
    summary="List API tokens", response_model=list[TokenInfo], responses=responses(Forbidden))
async def list_tokens(_admin: Admin, accounts: Accounts,
                      account_id: Annotated[str | None, Query(description="Only this account's tokens")] = None,
                      limit: Annotated[int, Query(ge=1, le=1000, description="At most this many rows (1 to 1000).")] = 100,
                      offset: Offset = 0):
    """Tokens with their role, account and state; secrets are never shown again."""
    return await accounts.repo.list_tokens(account_id, limit, offset)


@router.delete("/tokens/{token_id}", operation_id="revokeToken", response_description="Revoked",
    summary="Revoke an API token", status_code=204, responses=responses(Forbidden, NotFound))
async def revoke_token(token_id: str, _admin: Admin, accounts: Accounts):
    """Revoke a token: it is refused from now on (401 `unauthenticated`). Its row stays, with `revoked_at`. Admin only."""
    await accounts.revoke_token(token_id)
    return Response(status_code=204)
