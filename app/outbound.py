"""The outbound guard: resolve a customer-given host, allow it only if every address passes.

Used wherever certpost opens a connection on a customer's behalf (today the RFC 2136 provider's
server and the propagation name servers, customers' webhook URLs; later DNS hosting APIs). The rule itself
is `app.kit.outbound.OutboundPolicy`; this module adds name resolution:

* every A and AAAA answer must pass, not just the first: a name that resolves to one public and
  one loopback address would otherwise reach loopback whenever the resolver reorders;
* the caller connects to an address `resolve()` returned, never to the name again, so a record
  that changes between check and use (DNS rebinding) cannot move the connection;
* the check runs when the target is stored *and* again before each use, because the answer,
  and the operator's allow list, can change in between.

Resolution goes through the system resolver (``getaddrinfo``, so ``/etc/hosts`` counts), or,
when ``CERTPOST_OUTBOUND_RESOLVER`` names one, directly to that DNS server (A and AAAA queries).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from app.config import Settings
from app.kit.outbound import IPAddress, OutboundPolicy, OutboundRefused, parse_address

Resolver = Callable[[str], list[str]]
"""host name -> its addresses (A and AAAA), empty or OSError when it has none."""

RESOLVE_TIMEOUT = 5.0
HTTPS_PORT = 443


def system_resolver(host: str) -> list[str]:
    """Every address ``getaddrinfo`` gives for `host` (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def dns_server_resolver(address: str, port: int = 53, timeout: float = RESOLVE_TIMEOUT) -> Resolver:
    """A resolver that asks one DNS server for A and AAAA, with no cache (rebinding must show)."""

    def resolve(host: str) -> list[str]:
        import dns.exception  # here: dnspython (2.3 MB) loads only when a resolver is configured
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [address]
        resolver.port = port
        resolver.lifetime = timeout
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = resolver.resolve(host.rstrip(".") + ".", rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise OSError(f"resolver {address}:{port}: {type(exc).__name__}") from None
            found.extend(rdata.address for rdata in answer)
        return list(dict.fromkeys(found))

    return resolve


def parse_host_port(text: str, default_port: int = 53) -> tuple[str, int]:
    """``192.0.2.1``, ``192.0.2.1:5353``, ``[2001:db8::1]:5353``, ``2001:db8::1`` -> host, port."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default_port


@dataclass(frozen=True)
class OutboundGuard:
    """An `OutboundPolicy` plus the resolver that turns host names into addresses to check."""

    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    resolver: Resolver = system_resolver

    @classmethod
    def for_dns(cls, settings: Settings) -> OutboundGuard:
        """The guard for DNS targets: port 53, the operator's allow list and resolver."""
        resolver = system_resolver
        if settings.outbound_resolver:
            host, port = parse_host_port(settings.outbound_resolver)
            resolver = dns_server_resolver(host, port)
        return cls(OutboundPolicy(allow=settings.outbound_allow_networks), resolver)

    @classmethod
    def for_webhooks(cls, settings: Settings) -> OutboundGuard:
        """The guard for customers' webhook URLs: HTTPS on port 443, the same address rule and
        allow list as DNS targets (docs/webhooks.md)."""
        return cls(OutboundPolicy(ports=frozenset({HTTPS_PORT}), allow=settings.outbound_allow_networks),
                   cls.for_dns(settings).resolver)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to, all checked; OutboundRefused if any (or none) fails.

        Blocking (it may query DNS): call it from a thread or the worker's blocking pool.
        """
        self.policy.check_port(port)
        literal = parse_address(host)
        if literal is not None:
            return [self.policy.check_address(literal)]
        try:
            found = self.resolver(host)
        except (OSError, UnicodeError) as exc:
            raise OutboundRefused(f"{host} does not resolve ({exc})") from None
        if not found:
            raise OutboundRefused(f"{host} has no A or AAAA record")
        checked: list[IPAddress] = []
        for text in found:
            try:
                checked.append(self.policy.check_address(text))
            except OutboundRefused as exc:
                raise OutboundRefused(f"{host} resolves to {text}: {exc.reason}") from None
        return checked
