"""dns-01 records through a DNS hosting API, by way of dns-lexicon (any of its providers).

Lexicon (https://dns-lexicon.github.io/dns-lexicon/) wraps some hundred DNS hosting APIs
(Cloudflare, Route 53, Hetzner, OVH, deSEC, Gandi, PowerDNS …) behind one interface:
``create_record`` / ``delete_record`` for a zone. It is synchronous (``requests``): certpost
calls it only from the worker's blocking pool, where the whole ACME exchange already runs.

The provider class is used directly, with the zone certpost found, rather than through
``lexicon.client.Client``: the client guesses the zone from the public-suffix list (fetched
over the network on first use, and wrong for private zones) unless told to ask the system
resolver. certpost asks the zone's own servers instead (SOA walk, RFC 2308 §2).

Errors from Lexicon are not Lexicon exceptions but whatever the API library raised; they are
mapped onto the DNS error tree by HTTP status (401/403 credentials, 404 zone) and never carry
the request URL or a credential value (some APIs put keys in the query string).
"""

from __future__ import annotations

import argparse
import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from app.acme.dns.base import (
    DnsAuthRejected,
    DnsError,
    DnsProvider,
    DnsUnreachable,
    DnsUpdateFailed,
    DnsZoneNotFound,
    Nameserver,
)
from app.acme.dns.propagation import authoritative_nameservers, zone_at
from app.kit.lexicon import customer_refusal
from app.outbound import OutboundGuard

log = logging.getLogger("certpost.acme.dns")

DEFAULT_TTL = 60

@functools.cache
def _providers() -> dict[str, bool]:
    """Lexicon's providers and whether their extra packages are installed (read once: it walks
    the package metadata of every provider)."""
    from lexicon._private.discovery import find_providers

    return find_providers()


@functools.cache
def provider_options(name: str) -> frozenset[str]:
    """The option names a Lexicon provider declares (its ``configure_parser``), e.g.
    ``{"auth_token", "pdns_server", "pdns_server_id", "pdns_disable_notify"}`` for powerdns.
    Raises ValueError for an unknown provider or one whose extra dependencies are missing."""
    from lexicon._private.discovery import load_provider_module

    found = _providers()
    if name not in found:
        raise ValueError(f"dns-lexicon has no provider {name!r}")
    if not found[name]:
        raise ValueError(f"dns-lexicon provider {name!r} needs extra packages (dns-lexicon[{name}])")
    parser = argparse.ArgumentParser(add_help=False)
    load_provider_module(name).Provider.configure_parser(parser)
    return frozenset(action.dest for action in parser._actions)


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


class LexiconProvider(DnsProvider):
    """One Lexicon provider with its options and credentials (kept out of ``repr``).

    `zone` fixes the zone to write; otherwise a declared zone in `zones` holding the name, else
    the SOA found at `propagation_nameservers`, else the system resolver's answer. Propagation is
    awaited on `propagation_nameservers`, else on the zone's NS set (through `guard` for a
    customer's provider, so no private address is queried). With a `guard`, `customer_refusal`
    is applied again before each API session.
    """

    kind = "lexicon"

    def __init__(
        self,
        provider: str,
        options: Mapping[str, Any],
        credentials: Mapping[str, str],
        *,
        zone: str | None = None,
        zones: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
        propagation_nameservers: Sequence[Nameserver] | None = None,
        guard: OutboundGuard | None = None,
    ) -> None:
        self.provider = provider
        self._options = dict(options)
        self._credentials = dict(credentials)
        self.zone = zone
        self.zones = tuple(zones)
        self.ttl = ttl
        self.propagation_nameservers = list(propagation_nameservers) if propagation_nameservers else None
        self.guard = guard
        self._zones: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LexiconProvider(provider={self.provider!r}, zone={self.zone!r})"

    # -- zones and name servers -------------------------------------------------------------

    def find_zone(self, fqdn: str) -> str:
        name = fqdn.rstrip(".").lower()
        if self.zone:
            return self.zone
        declared = [z for z in self.zones if name == z or name.endswith("." + z)]
        if declared:
            return max(declared, key=len)
        with self._lock:
            if name in self._zones:
                return self._zones[name]
        if self.propagation_nameservers:
            found = zone_at(name, self.propagation_nameservers)
        else:
            found = self._system_zone(name)
        if found is None:
            raise DnsZoneNotFound(f"no zone found that holds {name}", fqdn=name)
        with self._lock:
            self._zones[name] = found
        return found

    @staticmethod
    def _system_zone(name: str) -> str | None:
        import dns.exception
        import dns.resolver

        try:
            return dns.resolver.zone_for_name(name).to_text(omit_final_dot=True)
        except dns.exception.DNSException:
            return None

    def nameservers_to_check(self, fqdn: str) -> Sequence[Nameserver]:
        if self.propagation_nameservers:
            return self.propagation_nameservers
        import dns.exception

        zone = self.find_zone(fqdn)
        try:
            servers = authoritative_nameservers(zone, guard=self.guard)
        except dns.exception.DNSException as exc:
            raise DnsUnreachable(f"cannot find the name servers of {zone}: {type(exc).__name__}", fqdn=fqdn) from None
        if not servers:
            raise DnsUnreachable(f"no usable name server for {zone}", fqdn=fqdn)
        return servers

    # -- records ----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for value in self._credentials.values():
            if value and len(str(value)) >= 4:
                text = text.replace(str(value), "***")
        return text

    def _session(self, zone: str):
        from lexicon._private.discovery import load_provider_module
        from lexicon.config import ConfigResolver

        if self.guard is not None:  # a customer's provider: the rule again, for rows stored before it
            reason = customer_refusal(self.provider, {**self._options, **self._credentials})
            if reason:
                raise DnsUnreachable(f"outbound guard: {reason}")
        config = ConfigResolver().with_dict({
            "provider_name": self.provider, "domain": zone, "ttl": self.ttl,
            self.provider: {**self._options, **self._credentials},
        })
        api = load_provider_module(self.provider).Provider(config)
        api.authenticate()
        return api

    def _call(self, fqdn: str, action: str, values: Sequence[str]) -> None:
        zone = self.find_zone(fqdn)
        where = f"lexicon {self.provider}"
        try:
            api = self._session(zone)
            try:
                for value in values:
                    if action == "add":
                        api.create_record("TXT", fqdn, value)
                    else:
                        api.delete_record(None, "TXT", fqdn, value)
            finally:
                api.cleanup()
        except DnsError:
            raise
        except Exception as exc:  # noqa: BLE001 - Lexicon raises whatever its API library raised
            raise self._mapped(exc, where, zone, fqdn) from None
        log.info("%s %s TXT %s (zone %s)", where, action, fqdn, zone)

    def _mapped(self, exc: Exception, where: str, zone: str, fqdn: str):
        import requests

        status = _http_status(exc)
        if status in (401, 403):
            return DnsAuthRejected(f"{where} refused the credentials for zone {zone} (HTTP {status})", fqdn=fqdn)
        if status == 404:
            return DnsZoneNotFound(f"{where} has no zone {zone} these credentials can write (HTTP 404)", fqdn=fqdn)
        if status is not None:
            return DnsUpdateFailed(f"{where} answered HTTP {status} for zone {zone}", fqdn=fqdn)
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return DnsUnreachable(f"{where} API did not answer ({type(exc).__name__})", fqdn=fqdn)
        detail = self._redact(str(exc))[:200]
        return DnsUpdateFailed(f"{where} failed for zone {zone}: {type(exc).__name__}: {detail}", fqdn=fqdn)

    def add_txt(self, fqdn: str, value: str) -> None:
        self._call(fqdn, "add", [value])

    def delete_txt(self, fqdn: str, value: str) -> None:
        self._call(fqdn, "delete", [value])

    def add_txt_values(self, fqdn: str, values: Sequence[str]) -> None:
        """One authenticated API session for all values at `fqdn` (wildcard plus base name)."""
        self._call(fqdn, "add", values)

    def delete_txt_values(self, fqdn: str, values: Sequence[str]) -> None:
        self._call(fqdn, "delete", values)
