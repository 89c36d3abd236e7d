"""The `lexicon` kind: any DNS hosting API dns-lexicon supports (Cloudflare, Route 53, OVH …).

Secrets: every value under `credentials` is sealed like a TSIG secret and never returned; an
option under `options` whose name says it is a credential (``auth_token``, ``auth_secret``,
``auth_password`` … per `app.acme.dns.lexicon.CREDENTIAL_NAME`) is refused there, so a key typed
in the wrong place is not stored in clear. The operator may put any other option under
`credentials` too (an account id it wants hidden, say). Option names are checked against the
provider's own declaration (Lexicon's ``configure_parser``), so a typo is a 422, not a failed
order at 3 a.m.

Outbound guard for a customer's provider: it may talk to its vendor's fixed API only, so options
that say where to connect or what to read (``pdns_server``, hosts, endpoints, URLs, files) and
the providers ``auto``, ``ddns`` and ``localzone`` are refused (`customer_refusal`), at creation
and again before each API session; the propagation name servers are checked like rfc2136's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.acme.providers.base import (
    DnsKind,
    InvalidDnsProvider,
    Prepared,
    SharedPublic,
    SharedSettings,
    check_nameservers,
    nameservers,
    normalise_shared,
)
from app.kit.lexicon import CREDENTIAL_NAME, customer_refusal
from app.kit.names import InvalidName, normalise_hostname
from app.kit.outbound import OutboundRefused
from app.outbound import OutboundGuard

if TYPE_CHECKING:
    from app.acme.dns.base import DnsProvider

OptionValue = Annotated[str, StringConstraints(max_length=2048)] | int | bool
CredentialValue = Annotated[str, StringConstraints(max_length=16384)]  # a service-account JSON fits


class LexiconSettings(SharedSettings):
    """A dns-lexicon provider, its options and its write-only credentials."""

    provider: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$",
                          description="The Lexicon provider name (`cloudflare`, `route53`, `hetzner`, `ovh`, "
                          "`desec`, `gandi`, `powerdns` …; `lexicon --help` lists them).", examples=["powerdns"])
    options: dict[str, OptionValue] = Field(
        default_factory=dict, max_length=32,
        description="The provider's options that are not credentials, by Lexicon's option name without `--` and "
        "with `_` (e.g. `pdns_server`, `auth_entrypoint`). Returned as stored.",
        examples=[{"pdns_server": "https://pdns.example.net"}])
    credentials: dict[str, CredentialValue] = Field(
        default_factory=dict, max_length=16,
        description="The provider's credential options (e.g. `auth_token`, `auth_username` + `auth_password`). "
        "Write-only: sealed, never returned; `secrets_set` names them.",
        examples=[{"auth_token": "example-api-key"}])
    zone: str | None = Field(None, max_length=253, description="The zone to write; default: the SOA found at "
                             "`propagation_nameservers`, else through the system resolver.", examples=["example.com"])
    ttl: int = Field(60, ge=1, le=86400, description="TTL of the TXT records (short: they live only for the "
                     "validation; some APIs refuse less than their minimum, e.g. deSEC's per-domain `minimum_ttl`, often "
                     "3600).", examples=[60])


class LexiconPublic(SharedPublic):
    """The stored settings of a `lexicon` provider; credential values are never returned."""

    model_config = ConfigDict(extra="ignore")

    provider: str = Field(description="The Lexicon provider name.", examples=["powerdns"])
    options: dict[str, OptionValue] = Field(default_factory=dict, description="Its options that are not credentials.",
                                            examples=[{"pdns_server": "https://pdns.example.net"}])
    zone: str | None = Field(None, description="The zone written; null: found by SOA lookup.", examples=["example.com"])
    ttl: int = Field(60, description="TTL of the TXT records.", examples=[60])


class LexiconKind(DnsKind):
    name = "lexicon"
    title = "Lexicon"
    summary = ("`lexicon`: a DNS hosting API through dns-lexicon (Cloudflare, Route 53, Hetzner, OVH, deSEC, Gandi, "
               "PowerDNS …); `credentials` are write-only.")
    settings_model = LexiconSettings
    public_model = LexiconPublic
    example: ClassVar[dict[str, Any]] = {"provider": "powerdns", "options": {"pdns_server": "https://pdns.example.net"},
                                         "credentials": {"auth_token": "example-api-key"}, "zone": "example.com", "ttl": 60}

    def prepare(self, settings: BaseModel) -> Prepared:
        values = settings.model_dump()
        credentials = values.pop("credentials")
        # Loads Lexicon and the provider's module: blocking (the service calls this in a thread).
        from app.acme.dns.lexicon import provider_options

        try:
            known = provider_options(values["provider"])
        except ValueError as exc:
            raise InvalidDnsProvider(f"settings.provider: {exc}") from None
        for where, given in (("options", values["options"]), ("credentials", credentials)):
            unknown = sorted(set(given) - known)
            if unknown:
                listed = sorted(known)
                more = f" and {len(listed) - 30} more" if len(listed) > 30 else ""
                raise InvalidDnsProvider(f"settings.{where}: {values['provider']} has no option {', '.join(unknown)} "
                                         f"(it has: {', '.join(listed[:30])}{more})")
        for name, value in values["options"].items():
            # Not only strings: a numeric API key given as a JSON number would be stored in
            # clear and returned. Booleans are flags (`auth_key_is_global`), never secrets.
            if not isinstance(value, bool) and CREDENTIAL_NAME.search(name):
                raise InvalidDnsProvider(f"settings.options.{name} is a credential: give it in settings.credentials")
        both = sorted(set(values["options"]) & set(credentials))
        if both:
            raise InvalidDnsProvider(f"{', '.join(both)} given both as option and as credential")
        normalise_shared(values)
        try:
            if values.get("zone"):
                values["zone"] = normalise_hostname(values["zone"])
        except InvalidName as exc:
            raise InvalidDnsProvider(f"settings.zone: {exc}") from None
        values["credential_names"] = sorted(credentials)
        return Prepared(values, {"credentials": credentials})

    def secret_names(self, settings: dict[str, Any]) -> list[str]:
        return [f"credentials.{name}" for name in settings.get("credential_names", [])]

    def check_targets(self, settings: dict[str, Any], guard: OutboundGuard,
                      secrets: dict[str, Any] | None = None) -> None:
        # The credentials' values are judged too when given (at creation): `auth_entrypoint`
        # stays allowed only while it is not a URL, wherever the customer put it.
        given = (secrets or {}).get("credentials") or {}
        options = {**settings.get("options", {}),
                   **{name: given.get(name, "") for name in settings.get("credential_names", [])}}
        reason = customer_refusal(settings["provider"], options)
        if reason:
            raise OutboundRefused(reason)
        check_nameservers(settings, guard)

    def build(self, settings: dict[str, Any], secrets: dict[str, Any], guard: OutboundGuard | None) -> DnsProvider:
        from app.acme.dns.lexicon import LexiconProvider

        return LexiconProvider(
            settings["provider"], settings.get("options", {}), secrets.get("credentials", {}),
            zone=settings.get("zone"), zones=settings.get("zones") or (), ttl=settings.get("ttl", 60),
            propagation_nameservers=nameservers(settings), guard=guard)
