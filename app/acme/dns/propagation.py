"""Waiting until authoritative name servers serve the dns-01 TXT values.

RFC 8555 §8.4: the CA looks the TXT record up itself, and a failed challenge is final for the order,
so answering before every authoritative server has the value wastes the order. Servers are asked
directly (no recursion, no caches), each until it returns all expected values, within one deadline.

`authoritative_nameservers()` finds the NS set of a zone through a resolver, for providers whose
primary is not what the world queries (hidden primaries, DNS hosting APIs).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from app.acme.dns.base import DnsPropagationTimeout, Nameserver
from app.kit.outbound import OutboundRefused
from app.outbound import OutboundGuard

log = logging.getLogger("certpost.acme.dns")

FIRST_INTERVAL = 0.2
"""Seconds before the first re-check; doubled each time up to the caller's interval."""


def query_txt(fqdn: str, server: Nameserver, *, timeout: float = 3.0) -> set[str] | None:
    """TXT values a server returns for `fqdn` (empty set for NXDOMAIN/NODATA); None on no answer."""
    host, port = server
    query = dns.message.make_query(dns.name.from_text(fqdn), dns.rdatatype.TXT)
    query.flags &= ~dns.flags.RD
    try:
        response, _ = dns.query.udp_with_fallback(query, host, timeout=timeout, port=port)
    except (dns.exception.DNSException, OSError, EOFError):
        return None
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    values: set[str] = set()
    for rrset in response.answer:
        if rrset.rdtype != dns.rdatatype.TXT:
            continue
        for rdata in rrset:
            values.add(b"".join(rdata.strings).decode("utf-8", "replace"))
    return values


def wait_for_txt(
    fqdn: str,
    values: Iterable[str],
    *,
    nameservers: Sequence[Nameserver],
    timeout: float = 120.0,
    interval: float = 2.0,
) -> None:
    """Poll each server until it serves every value; raise DnsPropagationTimeout at the deadline.

    The first re-check comes after ``FIRST_INTERVAL`` and the wait doubles up to `interval`: a
    primary that applied the update a moment late (or a secondary one NOTIFY behind) is seen
    within a fraction of a second, while a slow one is still polled only every `interval`.
    """
    wanted = set(values)
    pending = list(dict.fromkeys(nameservers))
    deadline = time.monotonic() + timeout
    delay = min(FIRST_INTERVAL, interval)
    while True:
        still: list[Nameserver] = []
        for server in pending:
            remaining = max(0.5, min(3.0, deadline - time.monotonic()))
            served = query_txt(fqdn, server, timeout=remaining)
            if served is None or not wanted <= served:
                still.append(server)
        pending = still
        if not pending:
            return
        if time.monotonic() + delay > deadline:
            servers = ", ".join(f"{h}:{p}" for h, p in pending)
            raise DnsPropagationTimeout(
                f"{fqdn}: TXT values not served by {servers} within {timeout:g} s", fqdn=fqdn
            )
        time.sleep(delay)
        delay = min(delay * 2, interval)


def authoritative_nameservers(
    zone: str,
    *,
    resolver: dns.resolver.Resolver | None = None,
    port: int = 53,
    guard: OutboundGuard | None = None,
) -> list[Nameserver]:
    """Addresses of the zone's NS hosts, resolved through `resolver` (the system's by default).

    For a customer's zone pass the outbound `guard`: the NS set is the customer's to choose, so
    an NS host that resolves to a non-public address is left out rather than queried.
    """
    resolver = resolver or dns.resolver.Resolver()
    servers: list[Nameserver] = []
    for ns in resolver.resolve(zone, "NS"):
        host = ns.target.to_text()
        if guard is not None:
            try:
                servers.extend((str(a), port) for a in guard.resolve(host.rstrip("."), port))
            except OutboundRefused as exc:
                log.warning("name server of %s left out by the outbound guard: %s", zone, exc.reason)
            continue
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)
        except OSError:
            log.warning("cannot resolve name server %s of %s", host, zone)
            continue
        for info in infos:
            servers.append((info[4][0], port))
    return list(dict.fromkeys(servers))


def _ask(name: dns.name.Name, rdtype, servers: Sequence[Nameserver], timeout: float) -> dns.message.Message | None:
    """The first authoritative (AA) NOERROR/NXDOMAIN answer any of `servers` gives, else None."""
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    for host, port in servers:
        try:
            response, _ = dns.query.udp_with_fallback(query, host, timeout=timeout, port=port)
        except (dns.exception.DNSException, OSError, EOFError):
            continue
        if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and response.flags & dns.flags.AA:
            return response
    return None


def zone_at(fqdn: str, servers: Sequence[Nameserver], *, timeout: float = 3.0) -> str | None:
    """The zone holding `fqdn` according to `servers`: the SOA of the name or of the nearest
    parent, or the SOA an authoritative negative answer carries (RFC 2308 §2). None when no
    server is authoritative for any enclosing zone."""
    name = dns.name.from_text(fqdn.rstrip(".") + ".")
    candidate = name
    while candidate != dns.name.root:
        response = _ask(candidate, dns.rdatatype.SOA, servers, timeout)
        if response is not None:
            for rrset in (*response.answer, *response.authority):
                if rrset.rdtype == dns.rdatatype.SOA and name.is_subdomain(rrset.name):
                    return rrset.name.to_text(omit_final_dot=True)
        candidate = candidate.parent()
    return None


def cname_at(fqdn: str, servers: Sequence[Nameserver], *, timeout: float = 3.0) -> str | None | bool:
    """Where `fqdn` points by CNAME according to `servers` (asked without recursion):
    the target (lower-case, no trailing dot); False when an authoritative server says it is no
    CNAME; None when no server answers authoritatively."""
    name = dns.name.from_text(fqdn.rstrip(".") + ".")
    response = _ask(name, dns.rdatatype.CNAME, servers, timeout)
    if response is None:
        return None
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == name:
            return rrset[0].target.to_text(omit_final_dot=True).lower()
    return False
