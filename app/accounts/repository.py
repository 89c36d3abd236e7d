"""Queries for accounts and tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Account, ApiToken
from app.paging import Order, PageRequest, Window, fetch

ACCOUNT_ORDER = Order("accounts", (Account.created_at, Account.id))
TOKEN_ORDER = Order("tokens", (ApiToken.created_at, ApiToken.id))


class AccountRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, row) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get_account(self, account_id: str) -> Account | None:
        return await self.session.get(Account, account_id)

    async def account_by_name(self, name: str) -> Account | None:
        return await self.session.scalar(select(Account).where(Account.name == name))

    async def list_accounts(self, visible: Any, page: PageRequest) -> Window[Account]:
        """Accounts in creation order (``visible``: ``Caller.visible_rows`` on ``Account.id``)."""
        return await fetch(self.session, select(Account).where(visible), ACCOUNT_ORDER, page)

    async def get_token(self, token_id: str) -> ApiToken | None:
        return await self.session.get(ApiToken, token_id)

    async def token_facts(self, token_id: str):
        """What authenticating needs of a token (id, role, account_id, secret_hash, revoked_at),
        as columns: this runs on a session or on a bare connection (app.deps.get_reader)."""
        t = ApiToken
        return (await self.session.execute(
            select(t.id, t.role, t.account_id, t.secret_hash, t.revoked_at).where(t.id == token_id))).first()

    async def list_tokens(self, visible: Any, page: PageRequest) -> Window[ApiToken]:
        """Tokens in creation order (``visible``: ``Caller.visible_rows`` on their account)."""
        return await fetch(self.session, select(ApiToken).where(visible), TOKEN_ORDER, page)

    async def count_tokens(self) -> int:
        return await self.session.scalar(select(func.count()).select_from(ApiToken)) or 0
