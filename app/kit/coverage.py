"""Does a certificate cover a host name? RFC 6125 section 6.4 with the CA/Browser Forum limits.

A SAN ``*.example.com`` covers exactly one label in the left-most position: ``mail.example.com``,
never ``example.com`` nor ``a.mail.example.com``. Partial-label wildcards (``w*.example.com``)
cover nothing. Inputs are normalised names (``app.kit.names``).
"""

from __future__ import annotations

from collections.abc import Iterable


def name_covers(san: str, hostname: str) -> bool:
    if san == hostname:
        return True
    if not san.startswith("*."):
        return False
    head, sep, rest = hostname.partition(".")
    return bool(sep) and bool(head) and head != "*" and rest == san[2:]


def covers(sans: Iterable[str], hostname: str) -> bool:
    """True when any of ``sans`` covers ``hostname``."""
    return any(name_covers(san, hostname) for san in sans)


def candidate_sans(hostname: str) -> list[str]:
    """The SAN values that could cover ``hostname``: itself and the wildcard one label up.

    Lets a repository find covering certificates with an indexed ``IN`` lookup instead of
    scanning every certificate.
    """
    _head, sep, rest = hostname.partition(".")
    return [hostname, f"*.{rest}"] if sep and "." in rest else [hostname]
