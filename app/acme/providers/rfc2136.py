"""The `rfc2136` kind: dynamic updates signed with TSIG (RFC 2136, RFC 8945) to a primary."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

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
from app.kit.names import InvalidName, normalise_hostname
from app.outbound import OutboundGuard

if TYPE_CHECKING:
    from app.acme.dns.base import DnsProvider

TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5"]


class Rfc2136Settings(SharedSettings):
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


class Rfc2136Public(SharedPublic):
    """The stored settings of an `rfc2136` provider; `key_secret` is never returned."""

    model_config = ConfigDict(extra="ignore")

    server: str = Field(description="Primary name server.", examples=["203.0.113.53"])
    port: int = Field(53, description="Its port.", examples=[53])
    key_name: str = Field(description="TSIG key name (lower-case, no trailing dot).", examples=["certpost.example.com"])
    key_algorithm: str = Field("hmac-sha256", description="TSIG algorithm.", examples=["hmac-sha256"])
    zone: str | None = Field(None, description="The zone updated; null: found by SOA lookup.", examples=["example.com"])


class Rfc2136Kind(DnsKind):
    name = "rfc2136"
    title = "Rfc2136"
    summary = "`rfc2136`: dynamic DNS updates signed with a TSIG key, to a primary you run (BIND, Knot, PowerDNS)."
    settings_model = Rfc2136Settings
    public_model = Rfc2136Public
    example: ClassVar[dict[str, Any]] = {
        "server": "203.0.113.53", "port": 53, "key_name": "certpost.example.com.", "key_algorithm": "hmac-sha256",
        "key_secret": "c2VjcmV0LXRzaWcta2V5LWZvci1kb2N1bWVudGF0aW9uLW9ubHk=", "zone": "example.com",
        "propagation_nameservers": ["192.0.2.53"]}

    def prepare(self, settings: BaseModel) -> Prepared:
        values = settings.model_dump()
        secrets = {"key_secret": values.pop("key_secret")}
        try:
            base64.b64decode(secrets["key_secret"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidDnsProvider("settings.key_secret must be base64 (as tsig-keygen prints it)") from None
        normalise_shared(values)
        try:
            values["key_name"] = values["key_name"].rstrip(".").lower()
            if values.get("zone"):
                values["zone"] = normalise_hostname(values["zone"])
        except InvalidName as exc:
            raise InvalidDnsProvider(f"settings.zone: {exc}") from None
        return Prepared(values, secrets)

    def secret_names(self, settings: dict[str, Any]) -> list[str]:
        return ["key_secret"]

    def check_targets(self, settings: dict[str, Any], guard: OutboundGuard,
                      secrets: dict[str, Any] | None = None) -> None:
        guard.policy.check_port(settings["port"])
        guard.resolve(settings["server"], settings["port"])
        check_nameservers(settings, guard)

    def build(self, settings: dict[str, Any], secrets: dict[str, Any], guard: OutboundGuard | None) -> DnsProvider:
        from app.acme.dns.rfc2136 import Rfc2136Provider  # dnspython loads with the first order

        provider = Rfc2136Provider(
            settings["server"], settings.get("port", 53), key_name=settings["key_name"],
            key_secret=secrets["key_secret"], key_algorithm=settings.get("key_algorithm", "hmac-sha256"),
            zone=settings.get("zone"), propagation_nameservers=nameservers(settings), guard=guard)
        provider.zones = tuple(settings.get("zones") or ()) + ((settings["zone"],) if settings.get("zone") else ())
        return provider
