from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from app import examples as ex
from app.acme.providers import KINDS, DnsKind
from app.paging import Page
from app.schemas import Condition, DisplayName, Strict

KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-4096"]


def _create_model(kind: DnsKind) -> type[BaseModel]:
    model = create_model(
        f"{kind.title}DnsProviderCreate",
        __base__=_ProviderCreateBase,
        __module__=__name__,
        kind=(Literal[kind.name], Field(description=f"The provider type: {kind.summary}", examples=[kind.name])),
        settings=(kind.settings_model, Field(description="How to reach and authenticate to the DNS service.")),
    )
    example = {"name": "example.com DNS", "kind": kind.name, "settings": kind.example}
    return _with_example(model, example, f"A new DNS provider of kind {kind.summary}")


def _with_example(model: type[BaseModel], example: dict, doc: str) -> type[BaseModel]:
    model.__doc__ = doc
    model.model_config["json_schema_extra"] = {"examples": [example]}
    model.model_rebuild(force=True)
    return model


class _ProviderCreateBase(Strict):
    name: DisplayName = Field(description="A name for people.", examples=["example.com BIND"])
    account_id: str | None = Field(None, description="Admins: the account that owns it (default: the platform).",
                                   examples=[None])


class _ProviderOutBase(BaseModel):
    id: str = Field(description="The provider's id.", examples=[ex.PROVIDER_ID])
    name: str = Field(description="Its name.", examples=["example.com BIND"])
    account_id: str | None = Field(description="The owning account; null: the platform's.", examples=[ex.ACCOUNT_ID])
    secrets_set: list[str] = Field(description="Which secret settings are stored (paths under `settings`, never "
                                   "their values); empty where `settings` is null.", examples=[["key_secret"]])
    usable: bool = Field(description="The caller may name it as `dns_provider_id` in a certificate order (every "
                         "provider a caller is shown is).", examples=[True])
    created_at: datetime = Field(description="When it was stored (UTC).", examples=[ex.CREATED])


def _public_example(kind: DnsKind) -> dict:
    """The documented response for a kind: its example settings as stored (secrets split off)."""
    prepared = {k: v for k, v in kind.example.items() if k not in ("key_secret", "credentials")}
    prepared["credential_names"] = sorted(kind.example.get("credentials", {}))
    return {"id": ex.PROVIDER_ID, "name": "example.com DNS", "kind": kind.name, "account_id": ex.ACCOUNT_ID,
            "settings": kind.public(prepared).model_dump(), "secrets_set": kind.secret_names(prepared),
            "usable": True, "created_at": ex.CREATED}


def _out_model(kind: DnsKind) -> type[BaseModel]:
    model = create_model(
        f"{kind.title}DnsProviderOut",
        __base__=_ProviderOutBase,
        __module__=__name__,
        kind=(Literal[kind.name], Field(description=f"The provider type: {kind.summary}", examples=[kind.name])),
        settings=(kind.public_model | None, Field(
            description="The settings without secrets. Null for a platform provider (`account_id` null) read with "
            "a customer token: its servers, key names and zones are the operator's; a customer needs its id, "
            "name and kind to order with it.")),
    )
    return _with_example(model, _public_example(kind), f"A stored DNS provider of kind {kind.summary}")


_CREATE = tuple(_create_model(k) for k in KINDS.values())
_OUT = tuple(_out_model(k) for k in KINDS.values())

DnsProviderCreate = Annotated[Union[_CREATE], Field(discriminator="kind")]  # noqa: UP007 - built from the registry
"""A new DNS provider: one schema per kind in app.acme.providers.KINDS, chosen by `kind`."""

DnsProviderOut = Annotated[Union[_OUT], Field(discriminator="kind")]  # noqa: UP007
"""A stored DNS provider, without secrets: one schema per kind, chosen by `kind`."""

_PROVIDER = _public_example(KINDS["rfc2136"])


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
    dns_provider_id: str | None = Field(None, description="dns-01: the DNS provider that publishes the TXT records. "
                                        "When `_acme-challenge.<name>` is a CNAME, the record goes to the end of the "
                                        "chain, written by the provider whose `zones` contain it (else this one).",
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
    error: Condition | None = Field(description="Why the order is `invalid`: `code`, `message`, `step` "
                                    "(`dns_update`, `http_publish`, `authorization`, `finalize`, `store`…), `at`, and in "
                                    "`details` the CA's `problem` document (RFC 8555 section 6.7).",
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
