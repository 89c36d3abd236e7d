"""Which URLs a webhook may have, and where its requests really go (the outbound guard).

A customer's webhook is a request certpost makes on the customer's behalf, so it goes through
the guard DNS providers use (``app.outbound.OutboundGuard.for_webhooks``): ``https`` only, port
443, and every address the host resolves to public unicast (or in the operator's
``CERTPOST_OUTBOUND_ALLOW``). It is checked when the URL is stored and again before every
attempt; the request then goes to the address the guard returned, with the URL's host name as
``Host`` and TLS server name, so a DNS record that changes in between cannot redirect it.

An administrator's webhook is operator configuration, like the platform's DNS providers: any
scheme of ``http``/``https``, any port and any address, loopback and private networks included
(a monitoring system on the same host, the test suite's receivers).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import idna  # httpx's own dependency: the same IDNA 2008 / UTS #46 mapping httpx applies to URLs

from app.kit.outbound import OutboundRefused, parse_address
from app.outbound import HTTPS_PORT, OutboundGuard


class BadUrl(ValueError):
    """Not an absolute http(s) URL certpost will call."""


def parse(url: str, *, guarded: bool) -> SplitResult:
    """The URL split, or BadUrl: absolute, http(s) (https for a guarded one), no user info, no fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadUrl(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUrl("the URL must be absolute http:// or https://")
    if guarded and parts.scheme != "https":
        raise BadUrl("a customer's webhook URL must use https")
    if parts.username is not None or parts.password is not None:
        raise BadUrl("the URL must not carry a user name or password")
    if parts.fragment:
        raise BadUrl("the URL must not have a fragment")
    if port is not None and not 0 < port < 65536:
        raise BadUrl("port out of range")
    return parts


def port_of(parts: SplitResult) -> int:
    return parts.port or (HTTPS_PORT if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class Target:
    """What to connect to: the URL to request, the Host header and the TLS server name."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None


def resolve(url: str, guard: OutboundGuard | None) -> Target:
    """Where one attempt goes. Without a guard (an admin's webhook): the URL as it is.

    With one: OutboundRefused unless every address of the host passes; the request then names
    the first checked address and keeps the host name for ``Host`` and SNI. Blocking (DNS).
    """
    if guard is None:
        return Target(url)
    try:
        parts = parse(url, guarded=True)
    except BadUrl as exc:
        raise OutboundRefused(str(exc)) from None
    host, port = ascii_host(parts.hostname), port_of(parts)
    address = guard.resolve(host, port)[0]
    literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    netloc = literal if parts.port is None else f"{literal}:{port}"
    named = f"[{host}]" if ":" in host else host
    host_header = named if parts.port is None else f"{named}:{port}"
    return Target(parts._replace(netloc=netloc).geturl(), host_header=host_header, sni_hostname=host)


def ascii_host(host: str) -> str:
    """The host as it goes on the wire: an internationalised name as its A-labels (RFC 5891),
    since the ``Host`` header and the TLS server name are ASCII (RFC 9110 section 7.2, RFC 6066
    section 3), and the resolver is asked for that same name. OutboundRefused if it has none."""
    if parse_address(host) is not None or host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise OutboundRefused(f"{host!r} is not a valid internationalised host name ({exc})") from None
