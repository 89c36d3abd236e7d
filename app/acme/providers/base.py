"""What every DNS provider kind supplies, and the settings every kind shares.

A kind is one object with four parts: its settings schema (input, with the write-only secrets)
and the public view of it (output), ``prepare`` (validate, normalise, split off the secrets),
``check_targets`` (the outbound guard for a customer's provider) and ``build`` (the
``app.acme.dns.DnsProvider`` the worker calls). The registry in ``__init__`` lists the kinds; the
API's request and response unions and the worker are derived from it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

from app.kit.names import InvalidName, normalise_hostname
from app.outbound import OutboundGuard
from app.problems import RuleViolation
from app.schemas import Strict

if TYPE_CHECKING:
    from app.acme.dns.base import DnsProvider

Nameserver = tuple[str, int]


class InvalidDnsProvider(RuleViolation):
    """The DNS provider's settings are not valid (the TSIG secret is not base64, a name server is not an address, an unknown Lexicon provider or option, a credential given as a plain option ...)."""

    code, title = "invalid_dns_provider", "The DNS provider settings are not valid"


def parse_nameserver(text: str) -> Nameserver:
    """``192.0.2.1``, ``192.0.2.1:5353``, ``2001:db8::1``, ``[2001:db8::1]:5353`` -> (address, port)."""
    import ipaddress

    text = text.strip()
    host = text
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not address, address:port or [v6]:port")
        tail = rest[1:] if rest else "53"
    elif text.count(":") == 1:
        host, _, tail = text.partition(":")
    else:
        tail = "53"
    if not tail.isdigit():
        raise ValueError(f"the port in {text!r} is not a number")
    port = int(tail)
    ipaddress.ip_address(host)  # an address, so checks never depend on a resolver
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


class SharedSettings(Strict):
    """Settings every kind has: where to wait for the records, and which zones it writes."""

    propagation_nameservers: list[str] | None = Field(
        None, max_length=16,
        description="Where to wait for the TXT records before answering the challenge: the zone's public "
        "authoritative servers as `address` or `address:port` (`[v6]:port`). Default: for `rfc2136` the update "
        "server; for `lexicon` the zone's NS set, looked up through the system resolver.",
        examples=[["192.0.2.53"]],
    )
    zones: list[str] | None = Field(
        None, max_length=64,
        description="Zones this provider can write. A domain whose `_acme-challenge` name is a CNAME into one of "
        "them (delegated dns-01) gets its TXT record written there by this provider, whichever provider the "
        "order names; the longest matching zone wins.",
        examples=[["acme.example.net"]],
    )


class SharedPublic(BaseModel):
    propagation_nameservers: list[str] | None = Field(None, description="Where certpost waits for the records.",
                                                      examples=[["192.0.2.53"]])
    zones: list[str] | None = Field(None, description="Zones it writes for delegated `_acme-challenge` names.",
                                    examples=[["acme.example.net"]])


@dataclass
class Prepared:
    """A provider's settings after `prepare`: what is stored in clear, and what is sealed."""

    settings: dict[str, Any]
    secrets: dict[str, Any] = field(default_factory=dict)


def normalise_shared(settings: dict[str, Any]) -> None:
    """Normalise `propagation_nameservers` (address:port) and `zones` (IDNA, lower-case) in place."""
    if settings.get("propagation_nameservers"):
        try:
            settings["propagation_nameservers"] = [
                f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
                for host, port in map(parse_nameserver, settings["propagation_nameservers"])
            ]
        except ValueError as exc:
            raise InvalidDnsProvider(f"settings.propagation_nameservers: {exc}") from None
    if settings.get("zones"):
        try:
            settings["zones"] = list(dict.fromkeys(normalise_hostname(z) for z in settings["zones"]))
        except InvalidName as exc:
            raise InvalidDnsProvider(f"settings.zones: {exc}") from None


def check_nameservers(settings: dict[str, Any], guard: OutboundGuard) -> None:
    """The outbound guard on the propagation name servers (OutboundRefused if one is not allowed)."""
    for text in settings.get("propagation_nameservers") or ():
        guard.policy.check(*parse_nameserver(text))


def nameservers(settings: dict[str, Any]) -> list[Nameserver] | None:
    found = settings.get("propagation_nameservers")
    return [parse_nameserver(n) for n in found] if found else None


class DnsKind(abc.ABC):
    """One kind of DNS provider. Subclasses set the class attributes and the four methods."""

    name: ClassVar[str]
    title: ClassVar[str]
    """CamelCase stem for the OpenAPI schema names (`Rfc2136` -> `Rfc2136DnsProviderCreate`)."""
    summary: ClassVar[str]
    settings_model: ClassVar[type[Strict]]
    public_model: ClassVar[type[BaseModel]]
    example: ClassVar[dict[str, Any]]
    """Settings for the documentation, secrets included."""

    @abc.abstractmethod
    def prepare(self, settings: BaseModel) -> Prepared:
        """Validate and normalise; InvalidDnsProvider on a rule the schema cannot express. Blocking."""

    @abc.abstractmethod
    def secret_names(self, settings: dict[str, Any]) -> list[str]:
        """Which secret settings a stored provider has (paths under `settings`, never values)."""

    @abc.abstractmethod
    def check_targets(self, settings: dict[str, Any], guard: OutboundGuard,
                      secrets: dict[str, Any] | None = None) -> None:
        """For a customer's provider: OutboundRefused if it would contact a non-public address.
        `secrets` (the sealed settings, known at creation only) may be judged too. Blocking."""

    @abc.abstractmethod
    def build(self, settings: dict[str, Any], secrets: dict[str, Any], guard: OutboundGuard | None) -> DnsProvider:
        """The provider the worker uses; `guard` is given for a customer's provider."""

    def public(self, settings: dict[str, Any]) -> BaseModel:
        return self.public_model.model_validate(settings)
