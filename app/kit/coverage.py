"""Does a certificate cover a host name? RFC 9525 section 6.3 with the CA/Browser Forum limits.

A SAN ``*.example.com`` covers exactly one label in the left-most position: ``mail.example.com``,
never ``example.com`` nor ``a.mail.example.com``. Partial-label wildcards (``w*.example.com``)
cover nothing, and neither does a wildcard directly on a public suffix (``*.com``, ``*.co.uk``):
the Baseline Requirements (section 3.2.2.6) forbid CAs to issue them and browsers refuse them.
Inputs are normalised names (``app.kit.names``); only SAN names count (``kit.x509.dns_names``).

The public suffixes are the ICANN section of the Public Suffix List as shipped, offline, by the
``publicsuffixlist`` package (updated with each release; no network at run time). The private
section (``github.io`` and the like) is not used: those are registrable names whose owners may
hold wildcards for their customers. A top-level label the list does not know counts as a public
suffix (its implicit ``*`` rule), so ``*.test`` is refused while ``*.example.test`` is not.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable


@functools.cache
def _suffixes():
    """The list, read once on first use (about 10k rules) rather than at import."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(only_icann=True)


def is_public_suffix(name: str) -> bool:
    """True for ``com``, ``co.uk``, ``test``: names under which anyone can register."""
    return bool(name) and _suffixes().is_public(name)


def wildcard_on_public_suffix(san: str) -> bool:
    return san.startswith("*.") and is_public_suffix(san[2:])


def name_covers(san: str, hostname: str) -> bool:
    if san == hostname:
        return True
    if not san.startswith("*."):
        return False
    head, sep, rest = hostname.partition(".")
    return bool(sep) and bool(head) and head != "*" and rest == san[2:] and not is_public_suffix(rest)


def covers(sans: Iterable[str], hostname: str) -> bool:
    """True when any of ``sans`` covers ``hostname``."""
    return any(name_covers(san, hostname) for san in sans)


def covers_in(names: frozenset[str] | set[str], hostname: str) -> bool:
    """``covers(names, hostname)`` for a set of SANs: the two names that can cover ``hostname``
    (itself, and the wildcard one label up unless that is on a public suffix) looked up, instead
    of every SAN compared. For the many rows of a list that share a certificate (a server's
    default: hundreds of names)."""
    if hostname in names:
        return True
    head, sep, rest = hostname.partition(".")
    return bool(sep) and bool(head) and head != "*" and f"*.{rest}" in names and not is_public_suffix(rest)


def public_suffix_wildcard_for(sans: Iterable[str], hostname: str) -> str | None:
    """The SAN that would cover ``hostname`` if wildcards on public suffixes counted, else None.

    Lets a refusal say why (``wildcard_public_suffix``) instead of a bare "not covered".
    """
    _head, sep, rest = hostname.partition(".")
    wanted = f"*.{rest}"
    return wanted if sep and wanted in sans and is_public_suffix(rest) else None


def candidate_sans(hostname: str) -> list[str]:
    """The SAN values that could cover ``hostname``: itself and the wildcard one label up.

    Lets a repository find covering certificates with an indexed ``IN`` lookup instead of
    scanning every certificate.
    """
    _head, sep, rest = hostname.partition(".")
    if sep and "." in rest and not is_public_suffix(rest):
        return [hostname, f"*.{rest}"]
    return [hostname]
