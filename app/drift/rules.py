"""Drift rules, pure: reading the agent's observations, what changed, when to repair."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_SERVICES = ("mail", "webmail")
# Every agent backend that verifies ports (app/agent/backends/*: ``name``), the TLS front included:
# an observation of a daemon not listed is dropped as malformed.
_DAEMONS = ("postfix", "dovecot", "nginx", "courier", "haproxy")


@dataclass(frozen=True)
class Seen:
    """One observation as stored: ``hostname`` "" is the no-SNI probe."""

    hostname: str
    service: str
    daemon: str
    port: int
    protocol: str
    expected: str
    served: str | None
    error: str | None
    at: datetime

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.hostname, self.service, self.daemon, self.port)

    @property
    def drifted(self) -> bool:
        """The port served something else than the agent applied, or nothing at all."""
        return self.served != self.expected


def domain_of(hostname: str) -> str | None:
    """The domain a probed name belongs to: ``mail.<domain>`` and ``webmail.<domain>`` are the
    only names bound (app/domains/rules.py ``service_hostname``); None for anything else."""
    for prefix in ("mail.", "webmail."):
        if hostname.startswith(prefix) and len(hostname) > len(prefix):
            return hostname[len(prefix):]
    return None


def parse(item: object, now: datetime) -> Seen | None:
    """An entry of the agent's ``GET /v1/observations`` answer, or None when it is malformed
    (an agent of another version, or a broken one: skipped, never stored half)."""
    if not isinstance(item, dict):
        return None
    name, service, daemon, port = item.get("name"), item.get("service"), item.get("daemon"), item.get("port")
    expected, served = item.get("expected"), item.get("served")
    if service not in _SERVICES or daemon not in _DAEMONS or type(port) is not int or not 0 < port < 65536:
        return None
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 253):
        return None
    if not isinstance(expected, str) or not _FINGERPRINT.fullmatch(expected):
        return None
    if served is not None and (not isinstance(served, str) or not _FINGERPRINT.fullmatch(served)):
        return None
    protocol = str(item.get("protocol") or "")[:16]
    error = item.get("error")
    error = str(error)[:500] if error else None
    return Seen(name or "", service, daemon, port, protocol, expected, served, error, _at(item.get("at"), now))


def _at(value: object, now: datetime) -> datetime:
    """The agent's time of the probe, if it is sane (not in the future); else the poll's."""
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return now
    return at if at.tzinfo is not None and at <= now else now


def changes(before: dict[tuple, bool], after: list[Seen]) -> tuple[list[Seen], list[Seen]]:
    """(newly drifted, newly back) among ``after``, given the drifted flags stored ``before``.
    A first observation that is drifted counts as newly drifted; a first good one as nothing."""
    detected = [s for s in after if s.drifted and not before.get(s.key, False)]
    resolved = [s for s in after if not s.drifted and before.get(s.key, False)]
    return detected, resolved


MAX_REPAIR_BACKOFF = timedelta(days=1)


def repair_due(drifted: int, delivery_due: bool, last_repair: datetime | None, now: datetime,
               backoff: float, repairs: int = 0) -> bool:
    """Schedule a repair delivery when a port drifted, no delivery waits already (any push
    repairs, app/agent/apply.py ``Pipeline.repair``), and the wait since the last repair is over.

    The wait is ``backoff`` seconds after the first repair and doubles with each further one
    while the server stays drifted (``repairs``: those scheduled since it last had none), up to
    a day, or ``backoff`` if that is longer: a drift a push cannot repair, such as a daemon
    configuration that no longer reads the agent's files, must not make the server re-deploy and
    reload its daemons every poll, nor every ``backoff`` forever (an HAProxy front reloads for
    tens of seconds at 10,000 certificates)."""
    if drifted <= 0 or delivery_due:
        return False
    if last_repair is None:
        return True
    wait = timedelta(seconds=backoff) * 2 ** min(max(repairs - 1, 0), 20)
    return now - last_repair >= min(wait, max(MAX_REPAIR_BACKOFF, timedelta(seconds=backoff)))


def observed(rows: list[Seen], desired: str) -> list[dict]:
    """The ``observed`` entries of one service of a domain's TLS status: per daemon and port,
    what was served when, and whether that is the certificate the domain should present now."""
    out = []
    for s in sorted(rows, key=lambda r: (r.daemon, r.port)):
        out.append({
            "daemon": s.daemon, "port": s.port, "protocol": s.protocol, "observed_at": s.at,
            "fingerprint": s.served, "matches": s.served == desired, "drifted": s.drifted, "error": s.error,
        })
    return out
