from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from app.paging import Page
from app.schemas import DisplayName, Strict

KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-4096"]
TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5"]


class Rfc2136Settings(Strict):
    """RFC 2136 dynamic updates signed with TSIG (RFC 8945)."""

    server: str = Field(min_length=1, max_length=253, description="Primary name server (address or host name). "
                        "For a customer account's provider: public unicast addresses only, every A/AAAA "
                        "answer (422 `dns_target_not_allowed`), unless the operator allows more.")
    port: int = Field(53, ge=1, le=65535, description="53 for a customer account's provider.")
    key_name: str = Field(min_length=1, max_length=253, description="TSIG key name")
    key_algorithm: TsigAlgorithm = "hmac-sha256"
    key_secret: str = Field(min_length=1, max_length=1024, description="TSIG secret (base64). Write-only.")
    zone: str | None = Field(None, max_length=253, description="The zone to update; default: found by SOA lookup")
    propagation_nameservers: list[str] | None = Field(
        None, max_length=16,
        description="Where to wait for the TXT records before answering the challenge: the zone's public "
        "authoritative servers as `address` or `address:port` (`[v6]:port`). Default: the update server, "
        "right when it is itself the public authority; list the public servers for a hidden primary.",
    )


class DnsProviderCreate(Strict):
    name: DisplayName
    kind: Literal["rfc2136"]
    settings: Rfc2136Settings
    account_id: str | None = Field(None, description="Admins: the account that owns it (default: the platform).")


class DnsProviderOut(BaseModel):
    id: str
    name: str
    kind: str
    account_id: str | None
    settings: dict = Field(description="The settings without secrets.")
    secrets_set: list[str] = Field(description="Which secret settings are stored (never their values).")
    created_at: datetime


class OrderCreate(Strict):
    domain: str | None = Field(None, description="With `wildcard`: order `<domain>` and `*.<domain>`.")
    wildcard: bool = False
    names: list[str] | None = Field(None, min_length=1, max_length=100, description="Explicit names instead of `domain`.")
    challenge: Literal["dns-01", "http-01"] = "dns-01"
    dns_provider_id: str | None = None
    key_type: KeyType = "ec-p256"
    bind: list[Literal["webmail", "mail"]] = Field(default_factory=list, description="Bind the result to the domain once issued.")
    certificate_id: str | None = Field(None, description="Renew or replace this certificate's material in place.")

    @model_validator(mode="after")
    def _one_way_of_naming(self):
        if (self.domain is None) == (self.names is None):
            raise ValueError("give either `domain` (with `wildcard`) or `names`")
        if self.names is not None and self.wildcard:
            raise ValueError("`wildcard` goes with `domain`; list `*.<domain>` in `names` instead")
        return self


class AuthorizationOut(BaseModel):
    identifier: str
    challenge: str
    status: str


class OrderOut(BaseModel):
    id: str
    status: Literal["pending", "processing", "valid", "invalid"]
    purpose: Literal["new", "renewal", "replace"]
    account_id: str | None
    domain: str | None
    names: list[str]
    challenge: str
    dns_provider_id: str | None
    key_type: str
    bind: list[str]
    certificate_id: str | None = Field(description="The issued certificate (or the one renewed in place).")
    authorizations: list[AuthorizationOut]
    error: dict | None = Field(description="`step`, `code`, `detail` and the CA's `problem` document.")
    created_at: datetime
    finished_at: datetime | None
    duration_ms: int | None


class OrderPage(Page[OrderOut]):
    """A page of certificate orders, newest first."""


class DnsProviderPage(Page[DnsProviderOut]):
    """A page of DNS providers, in name order."""
