"""Delegated dns-01: `_acme-challenge.<d>` as a CNAME into a zone certpost may write.

RFC 8555 §8.4 lets the CA follow CNAMEs when it looks up `_acme-challenge.<d>` (CAs do, and
Let's Encrypt documents it as the way to keep DNS credentials for the main zone off the ACME
client). The operator points `_acme-challenge.<d>` at a name in a small zone of its own, and
gives certpost credentials for that zone only. certpost then has to write the TXT record at the
end of the chain, with the provider that can write there, and wait on *that* zone's servers.

How the chain is read: one hop at a time, a CNAME query without recursion to the authoritative
servers of the provider chosen for the name being asked about (the provider whose declared
`zones` hold it, else the order's own). At most ``MAX_HOPS`` CNAMEs are followed; a name seen
twice is a loop (`dns_cname_loop`); a hop whose name no configured server answers for is a
dangling CNAME (`dns_cname_dangling`). When no server answers for the validation name itself,
the name is taken as not delegated and the order's provider writes it, as before delegation
existed; its own errors then say what went wrong.

Which provider writes the final target: among the providers the order's account may use, the
one whose declared zones contain the target (the longest zone wins), else the order's provider —
unless that is the platform's provider serving a customer's order (``default_follows`` false):
the customer chooses the CNAME, so the platform's credentials would otherwise write TXT records
wherever they can (another tenant's names, the platform's zones), and a delegated target must be
in a zone some provider declares, or under the order's own domain (`own_domains`), else
`dns_cname_target_not_allowed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.acme.dns.base import (
    DnsCnameDangling,
    DnsCnameLoop,
    DnsCnameNotAllowed,
    DnsError,
    DnsProvider,
)
from app.acme.dns.propagation import cname_at

MAX_HOPS = 8
"""CNAMEs followed before the chain counts as a loop (resolvers give up near this depth too)."""


@dataclass(frozen=True)
class Route:
    """Where the TXT values for one validation name go, and who writes them."""

    name: str
    """The validation name, `_acme-challenge.<d>`."""
    target: str
    """The end of its CNAME chain (the name itself when not delegated)."""
    provider: DnsProvider
    chain: tuple[str, ...]


def _within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def provider_for(name: str, default: DnsProvider, others: Sequence[DnsProvider]) -> DnsProvider:
    """The provider whose declared zones hold `name` (longest zone first), else `default`."""
    best, best_len = default, -1
    for provider in (default, *others):
        for zone in provider.zones:
            if _within(name, zone) and len(zone) > best_len:
                best, best_len = provider, len(zone)
    return best


def route(name: str, default: DnsProvider, others: Sequence[DnsProvider] = (), *,
          max_hops: int = MAX_HOPS, timeout: float = 3.0, default_follows: bool = True,
          own_domains: Sequence[str] = ()) -> Route:
    """Follow `name`'s CNAME chain and pick the provider for its end. Blocking (DNS queries)."""
    name = name.rstrip(".").lower()
    chain = [name]
    current = name
    for hop in range(max_hops + 1):
        asker = provider_for(current, default, others)
        try:
            servers = asker.nameservers_to_check(current)
        except DnsError:
            servers = []
        target = cname_at(current, servers, timeout=timeout) if servers else None
        if target is False:
            break
        if target is None:
            if hop == 0:
                break
            raise DnsCnameDangling(
                f"{chain[-2]} is a CNAME to {current}, for which no configured name server answers",
                fqdn=name,
            )
        if hop == max_hops:
            raise DnsCnameLoop(f"{name}: more than {max_hops} CNAMEs ({' -> '.join(chain)})", fqdn=name)
        if target in chain:
            raise DnsCnameLoop(f"{name}: the CNAME chain loops ({' -> '.join([*chain, target])})", fqdn=name)
        chain.append(target)
        current = target
    writer = provider_for(current, default, others)
    if (current != name and writer is default and not default_follows
            and not any(_within(current, zone) for zone in (*default.zones, *own_domains))):
        raise DnsCnameNotAllowed(
            f"{name} is a CNAME to {current}, which is in no zone a DNS provider declares for delegated "
            "challenges; the platform's provider writes only its own zones' names for an account's order",
            fqdn=name,
        )
    return Route(name, current, writer, tuple(chain))
