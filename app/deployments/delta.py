"""What changed between the document an agent applied and the desired one: pure functions.

Sending only the changed host names keeps a one-domain change small on a server with
thousands of domains: the agent rebuilds the full document from its own applied copy and
checks ``base_digest`` (the digest of the document the changes apply to), so a mismatch is
refused rather than guessed at, and the controller then falls back to the full document.

The controller computes a delta from the names a change marked (``pending_names``), never
from two whole documents, so it leaves out ``digest`` (the digest of the result, which would
take the whole document to compute); the agent reports the digest it reached, and the next
delta names it as its base.
"""

from __future__ import annotations

from collections.abc import Mapping

SCALARS = ("server_hostname", "server_certificate", "webmail_default")
SERVICES = ("mail", "webmail")


def service_of(hostname: str) -> str:
    """``mail.<d>`` or ``webmail.<d>``: the first label says which (they cannot collide)."""
    return hostname.split(".", 1)[0]


def name_changes(applied: Mapping[str, str], desired: Mapping[str, str | None]) -> dict[str, str | None]:
    """For each name of ``desired`` (None: not wanted), its new fingerprint where it differs
    from ``applied`` (None: remove it), sorted by name."""
    return {name: fp for name, fp in sorted(desired.items()) if applied.get(name) != fp}


def delta_body(generation: int, base_digest: str, head: Mapping[str, str],
               changes: Mapping[str, str | None], autoconfig: Mapping[str, str | None] | None = None) -> dict:
    """The delta document (docs/agent.md) for ``changes`` (host name -> fingerprint or None) and
    ``autoconfig`` (domain -> advertised host name, None: the domain is gone), the latter only
    when there is one, so an agent without the feature still takes deltas that carry none."""
    split: dict[str, dict[str, str | None]] = {service: {} for service in SERVICES}
    for name, fp in changes.items():
        split[service_of(name)][name] = fp
    body = {
        "generation": generation,
        "base_digest": base_digest,
        **{key: head[key] for key in SCALARS},
        "mail_changes": split["mail"],
        "webmail_changes": split["webmail"],
    }
    if autoconfig:
        body["autoconfig_changes"] = dict(sorted(autoconfig.items()))
    return body

