"""The registry of DNS provider kinds: the one place that maps a `kind` to its settings schema,
its secret fields, its checks and its constructor (see `base.DnsKind`).

Adding a kind: a module beside these with a `DnsKind` subclass (and, if it talks a new protocol,
an `app.acme.dns` module with its `DnsProvider`), then one line in `KINDS`. The API's request
and response schemas (a union discriminated by `kind`), the service's checks and the worker all
read this registry.
"""

from __future__ import annotations

from app.acme.providers.base import DnsKind, InvalidDnsProvider, Prepared, parse_nameserver
from app.acme.providers.lexicon import LexiconKind
from app.acme.providers.rfc2136 import Rfc2136Kind

KINDS: dict[str, DnsKind] = {kind.name: kind for kind in (Rfc2136Kind(), LexiconKind())}


def kind_of(name: str) -> DnsKind:
    """The kind of a stored provider (rows are only written for registered kinds)."""
    return KINDS[name]


__all__ = ["KINDS", "DnsKind", "InvalidDnsProvider", "Prepared", "kind_of", "parse_nameserver"]
