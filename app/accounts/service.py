"""Accounts and API tokens: creation, revocation, and authenticating a bearer token."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from app.accounts import tokens
from app.accounts.caller import SYSTEM, Caller
from app.accounts.models import Account, ApiToken
from app.accounts.repository import AccountRepository
from app.accounts.token_cache import TokenCache, token_key
from app.db import after_commit, new_id
from app.events import EventKind, record
from app.kit.time import utc_now
from app.paging import MAX_LIMIT, PageRequest, Window
from app.problems import Conflict, NotFound, RuleViolation, Unauthenticated


class AccountExists(Conflict):
    """An account with this name exists (names are unique, compared after trimming)."""

    code, title = "account_exists", "An account with this name exists"


class UnknownAccount(RuleViolation):
    """The `account_id` names no account."""

    code, title = "unknown_account", "No such account"


class AccountService:
    def __init__(self, repo: AccountRepository, token_cache: TokenCache | None = None):
        self.repo = repo
        self.token_cache = token_cache

    async def create_account(self, name: str) -> Account:
        if await self.repo.account_by_name(name):
            raise AccountExists(f"an account named {name!r} exists")
        account = Account(id=new_id(), name=name)
        try:
            await self.repo.add(account)
        except IntegrityError:
            raise AccountExists(f"an account named {name!r} exists") from None
        return account

    async def list_accounts(self, caller: Caller, page: PageRequest) -> Window[Account]:
        return await self.repo.list_accounts(caller.visible_rows(Account.id), page)

    async def list_tokens(self, caller: Caller, account_id: str | None, page: PageRequest) -> Window[ApiToken]:
        return await self.repo.list_tokens(caller.visible_rows(ApiToken.account_id, requested=account_id), page)

    async def require_account(self, account_id: str) -> Account:
        account = await self.repo.get_account(account_id)
        if account is None:
            raise UnknownAccount(f"account {account_id} does not exist")
        return account

    async def create_token(self, role: str, account_id: str | None, description: str | None = None, *,
                           caller: Caller) -> tuple[ApiToken, str]:
        """Returns the row and the full token text, which is never stored or shown again."""
        if account_id is not None:
            await self.require_account(account_id)
        secret = tokens.new_secret()
        row = ApiToken(
            id=new_id(),
            role=role,
            account_id=account_id,
            secret_hash=tokens.hash_secret(secret),
            description=description,
            created_at=utc_now(),
        )
        await self.repo.add(row)
        record(self.repo.session, EventKind.TOKEN_CREATED, caller, account_id=account_id, subjects={"token": row.id},
               data={"role": role, "description": description})
        return row, tokens.format_token(row.id, secret)

    async def revoke_token(self, token_id: str, *, caller: Caller) -> None:
        row = await self.repo.get_token(token_id)
        if row is None or row.revoked_at is not None:
            raise NotFound("token not found")
        row.revoked_at = utc_now()
        await self.repo.session.flush()
        if self.token_cache is not None:
            # At once, and again after COMMIT: a lookup that read the row before the commit
            # cannot store it (the cache's epoch moved), and none can read it unrevoked after.
            cache = self.token_cache
            cache.invalidate_token(row.id)
            after_commit(self.repo.session, f"token_cache:{row.id}", lambda: cache.invalidate_token(row.id))
        record(self.repo.session, EventKind.TOKEN_REVOKED, caller, account_id=row.account_id,
               subjects={"token": row.id}, data={"role": row.role})

    async def authenticate(self, bearer: str | None) -> Caller:
        """The caller a bearer token stands for. A process's token cache (when given) answers
        a token it authenticated less than ``token_cache_seconds`` ago without the database;
        only successes are cached, so a wrong token always costs a lookup."""
        parsed = tokens.parse_token(bearer or "")
        if parsed is None:
            raise Unauthenticated("send Authorization: Bearer <token>")
        cache = self.token_cache
        if cache is not None and cache.enabled:
            key = token_key(bearer)
            hit = cache.get(key)
            if hit is not None:
                return hit
            epoch = cache.epoch
            caller = await self._lookup(parsed)
            cache.put(key, caller, epoch)
            return caller
        return await self._lookup(parsed)

    async def _lookup(self, parsed: tuple[str, str]) -> Caller:
        row = await self.repo.token_facts(parsed[0])
        # Compare even when the row is missing, so both paths cost the same.
        stored = row.secret_hash if row is not None else "0" * 64
        if not tokens.secret_matches(parsed[1], stored) or row is None or row.revoked_at is not None:
            raise Unauthenticated("the token is unknown or revoked")
        return Caller(token_id=row.id, role=row.role, account_id=row.account_id)

    async def all_tokens(self, account_id: str | None = None) -> list[ApiToken]:
        """Every token (of one account), oldest first, revoked ones included: `certpost tokens list`."""
        found: list[ApiToken] = []
        cursor: str | None = None
        while True:
            window = await self.list_tokens(SYSTEM, account_id, PageRequest(limit=MAX_LIMIT, cursor=cursor))
            found += window.rows
            if window.next_cursor is None:
                return found
            cursor = window.next_cursor

    async def has_tokens(self) -> bool:
        return await self.repo.count_tokens() > 0
