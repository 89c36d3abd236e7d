from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app import examples as ex
from app.paging import Page
from app.schemas import DisplayName, Strict


class AccountCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Example Hosting Customer"}]})

    name: DisplayName = Field(description="A unique name for people.", examples=["Example Hosting Customer"])


_ACCOUNT = {"id": ex.ACCOUNT_ID, "name": "Example Hosting Customer", "created_at": ex.CREATED}


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_ACCOUNT]})

    id: str = Field(description="The account's id.", examples=[ex.ACCOUNT_ID])
    name: str = Field(description="Its name.", examples=["Example Hosting Customer"])
    created_at: datetime = Field(description="When it was created (UTC).", examples=[ex.CREATED])


class TokenCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"role": "customer", "account_id": ex.ACCOUNT_ID, "description": "control panel"}]})

    role: Literal["admin", "customer"] = Field(description="`admin`: everything; `customer`: one account's "
                                               "domains and certificates.", examples=["customer"])
    account_id: str | None = Field(None, description="Required for `customer`, absent for `admin`.",
                                   examples=[ex.ACCOUNT_ID])
    description: str | None = Field(None, max_length=200, description="What the token is for.",
                                    examples=["control panel"])

    @model_validator(mode="after")
    def _account_matches_role(self):
        if self.role == "customer" and not self.account_id:
            raise ValueError("a customer token needs account_id")
        if self.role == "admin" and self.account_id:
            raise ValueError("an admin token has no account_id")
        return self


_TOKEN = {"id": ex.TOKEN_ID, "role": "customer", "account_id": ex.ACCOUNT_ID, "description": "control panel",
          "created_at": ex.CREATED}


class TokenOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_TOKEN, "token": "cpt_1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a_q8Xr2mVb7LpT0sWk4nZc9yHd3gFj6eAuKp1Rw5Ty8Qz"}]})

    id: str = Field(description="The token's id (used to revoke it).", examples=[ex.TOKEN_ID])
    role: str = Field(description="`admin` or `customer`.", json_schema_extra={"enum": ["admin", "customer"]},
                      examples=["customer"])
    account_id: str | None = Field(description="The customer's account; null for an admin token.",
                                   examples=[ex.ACCOUNT_ID])
    description: str | None = Field(description="What the token is for.", examples=["control panel"])
    created_at: datetime = Field(description="When it was created (UTC).", examples=[ex.CREATED])
    token: str = Field(description="The secret, shown this once; only its hash is stored.",
                       examples=["cpt_1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a_q8Xr2mVb7LpT0sWk4nZc9yHd3gFj6eAuKp1Rw5Ty8Qz"])


class TokenInfo(BaseModel):
    """A token as listed: never its secret."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{**_TOKEN, "revoked_at": None}]})
    id: str = Field(description="The token's id.", examples=[ex.TOKEN_ID])
    role: str = Field(description="`admin` or `customer`.", json_schema_extra={"enum": ["admin", "customer"]},
                      examples=["customer"])
    account_id: str | None = Field(description="The customer's account; null for an admin token.",
                                   examples=[ex.ACCOUNT_ID])
    description: str | None = Field(description="What the token is for.", examples=["control panel"])
    created_at: datetime = Field(description="When it was created (UTC).", examples=[ex.CREATED])
    revoked_at: datetime | None = Field(description="When it was revoked; null while it works.", examples=[None])


class AccountPage(Page[AccountOut]):
    """A page of accounts, oldest first."""

    model_config = ex.page(_ACCOUNT, ex.cursor("accounts", ex.CREATED, ex.ACCOUNT_ID))


class TokenPage(Page[TokenInfo]):
    """A page of API tokens (never their secrets), oldest first."""

    model_config = ex.page({**_TOKEN, "revoked_at": None}, None)
