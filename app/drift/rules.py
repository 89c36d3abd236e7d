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


PROBE_ERRORS = {
    "tls_handshake_failed": "The port accepted the connection, but the TLS handshake failed.",
    "no_certificate": "The port completed the TLS handshake without presenting a certificate.",
    "starttls_failed": "The port's mail protocol did not offer or accept STARTTLS.",
    "connection_failed": "The port could not be reached (connection refused, timed out or unreachable).",
    "probe_failed": "The agent could not read which certificate the port serves.",
}
"""Why a probe got no handshake, by ``error_code``, in the words a customer is given: the agent's
own text (app/agent/probe.py) names the address and port it dialled and the daemon's greeting,
which are the platform's business, so only admins read it."""

_STARTTLS_TEXT = re.compile(r"(SMTP|IMAP|POP3) |unexpected SMTP reply")
_ADDRESS_TEXT = re.compile(r"\S+:\d+ \(")


def probe_error_code(error: str | None) -> str | None:
    """The stable code of an agent's probe error text (None: no error)."""
    if not error:
        return None
    if error.startswith("TLS handshake"):
        return "tls_handshake_failed"
    if error.endswith("presented no certificate"):
        return "no_certificate"
    if _STARTTLS_TEXT.match(error):
        return "starttls_failed"
    if _ADDRESS_TEXT.match(error):
        return "connection_failed"
    return "probe_failed"


def probe_error(error: str | None, *, detail: bool, code: str | None = None) -> tuple[str | None, str | None]:
    """(code, text) of a probe error as a reader may see it: the agent's text with ``detail``
    (admins), else the generic sentence of its code."""
    code = code or probe_error_code(error)
    if code is None:
        return None, None
    return code, error if detail else PROBE_ERRORS.get(code, PROBE_ERRORS["probe_failed"])


def observed(rows: list[Seen], desired: str, *, detail: bool) -> list[dict]:
    """The ``observed`` entries of one service of a domain's TLS status: per daemon and port,
    what was served when, and whether that is the certificate the domain should present now.
    ``detail``: the agent's error text (admins); otherwise its generic sentence (``probe_error``)."""
    out = []
    for s in sorted(rows, key=lambda r: (r.daemon, r.port)):
        code, error = probe_error(s.error, detail=detail)
        out.append({
            "daemon": s.daemon, "port": s.port, "protocol": s.protocol, "observed_at": s.at,
            "fingerprint": s.served, "matches": s.served == desired, "drifted": s.drifted, "error": error,
            "error_code": code,
        })
    return out


def event_data_for(data: dict, *, detail: bool) -> dict:
    """A ``drift.detected``/``drift.resolved`` event's data as a reader may see it (the event API
    and webhooks): the same rule as ``observed``. Events recorded before ``error_code`` existed
    get theirs from the text."""
    if detail or not data.get("error"):
        return data
    code, error = probe_error(data["error"], detail=False, code=data.get("error_code"))
    return {**data, "error": error, "error_code": code}
