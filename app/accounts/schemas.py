from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.paging import Page
from app.schemas import DisplayName, Strict


class AccountCreate(Strict):
    name: DisplayName


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    created_at: datetime


class TokenCreate(Strict):
    role: Literal["admin", "customer"]
    account_id: str | None = None
    description: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _account_matches_role(self):
        if self.role == "customer" and not self.account_id:
            raise ValueError("a customer token needs account_id")
        if self.role == "admin" and self.account_id:
            raise ValueError("an admin token has no account_id")
        return self


class TokenOut(BaseModel):
    id: str
    role: str
    account_id: str | None
    description: str | None
    created_at: datetime
    token: str = Field(description="The secret, shown this once; only its hash is stored.")


class TokenInfo(BaseModel):
    """A token as listed: never its secret."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    role: str
    account_id: str | None
    description: str | None
    created_at: datetime
    revoked_at: datetime | None


class AccountPage(Page[AccountOut]):
    """A page of accounts, oldest first."""


class TokenPage(Page[TokenInfo]):
    """A page of API tokens (never their secrets), oldest first."""
