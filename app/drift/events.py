"""The events a drift poll raises: ``drift.detected`` and ``drift.resolved``, one per probe
(name, service, daemon, port) whose state changed, recorded in the poll's own transaction.

A name's event belongs to the account of its domain (``mail.a.test`` → ``a.test``), so a
customer sees the drift of its own names only; the no-SNI probe (the server's default) is the
platform's (no account). ``error`` is the agent's text, which names internal addresses: a
reader without an admin token gets the generic sentence of ``error_code`` instead
(``rules.event_data_for``, applied by the event API and by webhooks of an account).
"""

from __future__ import annotations

from app.accounts.caller import Caller
from app.drift.repository import DriftRepository
from app.drift.rules import Seen, domain_of, probe_error_code
from app.events import EventKind, record


def event_data(seen: Seen) -> dict:
    return {"host_name": seen.hostname or None, "service": seen.service, "daemon": seen.daemon,
            "port": seen.port, "protocol": seen.protocol, "expected_fingerprint_sha256": seen.expected,
            "observed_fingerprint_sha256": seen.served, "error": seen.error,
            "error_code": probe_error_code(seen.error), "observed_at": seen.at.isoformat()}


async def record_changes(session, caller: Caller, server_id: str, detected: list[Seen],
                         resolved: list[Seen]) -> None:
    if not detected and not resolved:
        return
    domains = {domain_of(s.hostname) for s in [*detected, *resolved]} - {None}
    accounts = await DriftRepository(session).domain_accounts(server_id, domains)
    for kind, changed in ((EventKind.DRIFT_DETECTED, detected), (EventKind.DRIFT_RESOLVED, resolved)):
        for seen in changed:
            domain = domain_of(seen.hostname)
            record(session, kind, caller, account_id=accounts.get(domain),
                   subjects={"server": server_id, "domain": domain if domain in accounts else None},
                   data=event_data(seen))
