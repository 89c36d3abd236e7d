"""Queries for accounts and tokens."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Account, ApiToken


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

    async def list_accounts(self, limit: int, offset: int) -> list[Account]:
        stmt = select(Account).order_by(Account.created_at, Account.id).limit(limit).offset(offset)
        return list(await self.session.scalars(stmt))

    async def get_token(self, token_id: str) -> ApiToken | None:
        return await self.session.get(ApiToken, token_id)

    async def list_tokens(self, account_id: str | None, limit: int, offset: int) -> list[ApiToken]:
        stmt = select(ApiToken)
        if account_id is not None:
            stmt = stmt.where(ApiToken.account_id == account_id)
        stmt = stmt.order_by(ApiToken.created_at, ApiToken.id).limit(limit).offset(offset)
        return list(await self.session.scalars(stmt))

    async def count_tokens(self) -> int:
        return await self.session.scalar(select(func.count()).select_from(ApiToken)) or 0
