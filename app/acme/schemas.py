from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app import examples as ex
from app.paging import Page
from app.schemas import DisplayName, Strict

KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-4096"]
TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5"]


class Rfc2136Settings(Strict):
    """RFC 2136 dynamic updates signed with TSIG (RFC 8945)."""

    server: str = Field(min_length=1, max_length=253, description="Primary name server (address or host name). "
                        "For a customer account's provider: public unicast addresses only, every A/AAAA "
                        "answer (422 `dns_target_not_allowed`), unless the operator allows more.",
                        examples=["203.0.113.53"])
    port: int = Field(53, ge=1, le=65535, description="53 for a customer account's provider.",
                      examples=[53])
    key_name: str = Field(min_length=1, max_length=253, description="TSIG key name",
                          examples=["certpost.example.com."])
    key_algorithm: TsigAlgorithm = Field("hmac-sha256", description="TSIG algorithm (RFC 8945 section 6).",
                                         examples=["hmac-sha256"])
    key_secret: str = Field(min_length=1, max_length=1024, description="TSIG secret (base64). Write-only.",
                            examples=["c2VjcmV0LXRzaWcta2V5LWZvci1kb2N1bWVudGF0aW9uLW9ubHk="])
    zone: str | None = Field(None, max_length=253, description="The zone to update; default: found by SOA lookup",
                            examples=["example.com"])
    propagation_nameservers: list[str] | None = Field(
        None, max_length=16,
        description="Where to wait for the TXT records before answering the challenge: the zone's public "
        "authoritative servers as `address` or `address:port` (`[v6]:port`). Default: the update server, "
        "right when it is itself the public authority; list the public servers for a hidden primary.",
        examples=[["192.0.2.53"]],
    )


_SETTINGS = {"server": "203.0.113.53", "port": 53, "key_name": "certpost.example.com.",
             "key_algorithm": "hmac-sha256", "zone": "example.com", "propagation_nameservers": ["192.0.2.53"]}


class DnsProviderCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "example.com BIND", "kind": "rfc2136",
        "settings": {**_SETTINGS, "key_secret": "c2VjcmV0LXRzaWcta2V5LWZvci1kb2N1bWVudGF0aW9uLW9ubHk="},
    }]})

    name: DisplayName = Field(description="A name for people.", examples=["example.com BIND"])
    kind: Literal["rfc2136"] = Field(description="The provider type: `rfc2136` (dynamic DNS updates with TSIG).",
                                     examples=["rfc2136"])
    settings: Rfc2136Settings = Field(description="How to reach and authenticate to the name server.")
    account_id: str | None = Field(None, description="Admins: the account that owns it (default: the platform).",
                                   examples=[None])


_PROVIDER = {
    "id": ex.PROVIDER_ID, "name": "example.com BIND", "kind": "rfc2136", "account_id": ex.ACCOUNT_ID,
    "settings": _SETTINGS, "secrets_set": ["key_secret"], "created_at": ex.CREATED,
}


class DnsProviderOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_PROVIDER]})

    id: str = Field(description="The provider's id.", examples=[ex.PROVIDER_ID])
    name: str = Field(description="Its name.", examples=["example.com BIND"])
    kind: str = Field(description="`rfc2136`.", json_schema_extra={"enum": ["rfc2136"]}, examples=["rfc2136"])
    account_id: str | None = Field(description="The owning account; null: the platform's.", examples=[ex.ACCOUNT_ID])
    settings: dict = Field(description="The settings without secrets.", examples=[_SETTINGS])
    secrets_set: list[str] = Field(description="Which secret settings are stored (never their values).",
                                   examples=[["key_secret"]])
    created_at: datetime = Field(description="When it was stored (UTC).", examples=[ex.CREATED])


class OrderCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "domain": ex.DOMAIN, "wildcard": True, "challenge": "dns-01", "dns_provider_id": ex.PROVIDER_ID,
        "bind": ["webmail", "mail"],
    }]})

    domain: str | None = Field(None, description="With `wildcard`: order `<domain>` and `*.<domain>`.",
                               examples=[ex.DOMAIN])
    wildcard: bool = Field(False, description="With `domain`: add `*.<domain>` (needs dns-01).", examples=[True])
    names: list[str] | None = Field(None, min_length=1, max_length=100, description="Explicit names instead of `domain`.",
                                    examples=[["webmail.example.com", "mail.example.com"]])
    challenge: Literal["dns-01", "http-01"] = Field("dns-01", description="How the CA validates each name "
                                                    "(RFC 8555 section 8).", examples=["dns-01"])
    dns_provider_id: str | None = Field(None, description="dns-01: the DNS provider that publishes the TXT records.",
                                        examples=[ex.PROVIDER_ID])
    key_type: KeyType = Field("ec-p256", description="The new certificate's key.", examples=["ec-p256"])
    bind: list[Literal["webmail", "mail"]] = Field(default_factory=list, description="Bind the result to the domain once issued.",
                                                   examples=[["webmail", "mail"]])
    autoconfig: bool = Field(
        False, description="Add `autoconfig.<d>` and `autodiscover.<d>` of each domain the names are under, where "
        "no name (such as `*.<d>`) covers them already: mail clients fetch their settings there, served with the "
        "webmail certificate (docs/autoconfig.md).", examples=[False])
    certificate_id: str | None = Field(None, description="Renew or replace this certificate's material in place.",
                                       examples=[None])

    @model_validator(mode="after")
    def _one_way_of_naming(self):
        if (self.domain is None) == (self.names is None):
            raise ValueError("give either `domain` (with `wildcard`) or `names`")
        if self.names is not None and self.wildcard:
            raise ValueError("`wildcard` goes with `domain`; list `*.<domain>` in `names` instead")
        return self


class AuthorizationOut(BaseModel):
    identifier: str = Field(description="The name being validated.", examples=["*.example.com"])
    challenge: str = Field(description="`dns-01` or `http-01`.", json_schema_extra={"enum": ["dns-01", "http-01"]},
                           examples=["dns-01"])
    status: str = Field(description="`pending`, `valid`, `invalid`, or `unknown` when the order failed before "
                        "the CA said.", examples=["valid"])


ORDER_EXAMPLE = {
    "id": ex.ORDER_ID, "status": "pending", "purpose": "new", "account_id": ex.ACCOUNT_ID, "domain": ex.DOMAIN,
    "names": [ex.DOMAIN, "*.example.com"], "challenge": "dns-01", "dns_provider_id": ex.PROVIDER_ID,
    "key_type": "ec-p256", "bind": ["webmail", "mail"], "certificate_id": None,
    "authorizations": [{"identifier": ex.DOMAIN, "challenge": "dns-01", "status": "pending"},
                       {"identifier": "*.example.com", "challenge": "dns-01", "status": "pending"}],
    "error": None, "created_at": ex.CREATED, "finished_at": None, "duration_ms": None,
}


class OrderOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ORDER_EXAMPLE]})

    id: str = Field(description="The order's id.", examples=[ex.ORDER_ID])
    status: Literal["pending", "processing", "valid", "invalid"] = Field(
        description="`pending` (queued), `processing` (the worker runs it), `valid` (issued), `invalid` (failed: "
        "see `error`).", examples=["pending"])
    purpose: Literal["new", "renewal", "replace"] = Field(
        description="`new` certificate, `renewal` of one in place, or `replace` another's material.",
        examples=["new"])
    account_id: str | None = Field(description="The owning account; null: the platform.", examples=[ex.ACCOUNT_ID])
    domain: str | None = Field(description="The domain the names are under, when `bind` needs it.",
                               examples=[ex.DOMAIN])
    names: list[str] = Field(description="Every name ordered.", examples=[[ex.DOMAIN, "*.example.com"]])
    challenge: str = Field(description="`dns-01` or `http-01`.", json_schema_extra={"enum": ["dns-01", "http-01"]},
                           examples=["dns-01"])
    dns_provider_id: str | None = Field(description="dns-01: the DNS provider.", examples=[ex.PROVIDER_ID])
    key_type: str = Field(description="The new certificate's key type.",
                          json_schema_extra={"enum": ["ec-p256", "ec-p384", "rsa-2048", "rsa-4096"]},
                          examples=["ec-p256"])
    bind: list[str] = Field(description="Services bound to the result once issued.", examples=[["webmail", "mail"]])
    certificate_id: str | None = Field(description="The issued certificate (or the one renewed in place).",
                                       examples=[None])
    authorizations: list[AuthorizationOut] = Field(description="One per name, with its validation state.")
    error: dict | None = Field(description="`step`, `code`, `detail` and the CA's `problem` document.",
                               examples=[None])
    created_at: datetime = Field(description="When it was requested (UTC).", examples=[ex.CREATED])
    finished_at: datetime | None = Field(description="When it became `valid` or `invalid`.", examples=[None])
    duration_ms: int | None = Field(description="How long the worker took, once finished.", examples=[None])


class OrderPage(Page[OrderOut]):
    """A page of certificate orders, newest first."""

    model_config = ex.page(ORDER_EXAMPLE, None)


class DnsProviderPage(Page[DnsProviderOut]):
    """A page of DNS providers, in name order."""

    model_config = ex.page(_PROVIDER, None)
