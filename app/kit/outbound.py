"""Where requests made on a customer's behalf may go: public unicast addresses, one port.

A customer who can name a host for certpost to contact (a DNS provider's server, the name servers
to poll, later a webhook) could otherwise make the controller probe loopback services, the
hosting network or a cloud metadata endpoint, and read open/closed ports off the errors. This
module holds the address rule only, as pure functions; `app.outbound` adds resolution.

An address is refused when it is in the IANA special-purpose registries (RFC 6890 and the
registries it created; RFC 1918 private, RFC 6598 shared/CGNAT, RFC 3927 and RFC 4291 §2.5.6
link-local, RFC 5737 / RFC 3849 / RFC 9637 documentation, RFC 2544 benchmarking, RFC 4193 unique
local, multicast, reserved, unspecified, loopback), or outside IPv6 global unicast 2000::/3.
IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:0:0/96, RFC 4291 §2.5.5.2; NAT64
64:ff9b::/96, RFC 6052; 6to4 2002::/16, RFC 3056) are judged by the IPv4 address inside, since
that is where the packets end up. Operators widen the rule only through an explicit allow list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DNS_PORT = 53

_V4_SPECIAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified (this network)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space / CGNAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation (RFC 5737)"),
    ("192.88.99.0/24", "6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation (RFC 5737)"),
    ("203.0.113.0/24", "documentation (RFC 5737)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (includes broadcast)"),
)

_V6_SPECIAL: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated, RFC 4291)"),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001::/23", "IETF protocol assignments, Teredo (RFC 2928, RFC 4380)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "SRv6 segment identifiers (RFC 9602)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")

_V4_TABLE = tuple((ipaddress.IPv4Network(n), why) for n, why in _V4_SPECIAL)
_V6_TABLE = tuple((ipaddress.IPv6Network(n), why) for n, why in _V6_SPECIAL)


class OutboundRefused(Exception):
    """A target the policy does not allow; ``reason`` names the address and the rule it breaks."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (well-known prefix) or 6to4 address leads to."""
    if address in _MAPPED:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def effective_address(address: IPAddress) -> IPAddress:
    """Where packets to `address` end up: the embedded IPv4 address for the forms that carry one."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return inner
    return address


def non_public_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is one."""
    target = effective_address(address)
    table = _V4_TABLE if isinstance(target, ipaddress.IPv4Address) else _V6_TABLE
    for network, why in table:
        if target in network:
            return why
    if isinstance(target, ipaddress.IPv6Address) and target not in _GLOBAL_UNICAST_V6:
        return "not IPv6 global unicast (2000::/3)"
    if not target.is_global:  # the stdlib's copy of the IANA registries, as a second opinion
        return "not globally reachable"
    return None


def parse_address(text: str) -> IPAddress | None:
    """`text` as an IP address (a zone index like ``%eth0`` refused), or None if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return None
    return address


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs of an allow list (``10.53.0.0/24``, ``fd00:53::/64``); ValueError on a bad one."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


@dataclass(frozen=True)
class OutboundPolicy:
    """Public unicast on one of `ports`, plus the networks an operator allowed on purpose.

    `allow` widens the address rule only, never the port rule: an allowed internal primary
    is still reached on the protocol's port.
    """

    ports: frozenset[int] = frozenset({DNS_PORT})
    allow: tuple[IPNetwork, ...] = field(default_factory=tuple)

    def allowed_by_operator(self, address: IPAddress) -> bool:
        candidates = {address, effective_address(address)}
        return any(a in net for a in candidates for net in self.allow if a.version == net.version)

    def check_port(self, port: int) -> None:
        if port not in self.ports:
            allowed = ", ".join(str(p) for p in sorted(self.ports))
            raise OutboundRefused(f"port {port} is not allowed (only {allowed})")

    def check_address(self, address: IPAddress | str) -> IPAddress:
        """The address, parsed; OutboundRefused if the policy does not allow it."""
        parsed = parse_address(address) if isinstance(address, str) else address
        if parsed is None:
            raise OutboundRefused(f"{address!r} is not an IP address")
        if self.allowed_by_operator(parsed):
            return parsed
        reason = non_public_reason(parsed)
        if reason is not None:
            raise OutboundRefused(f"{parsed} is {reason}")
        return parsed

    def check(self, address: IPAddress | str, port: int) -> IPAddress:
        """Both rules for one (address, port) pair."""
        self.check_port(port)
        return self.check_address(address)
