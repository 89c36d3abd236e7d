"""The events a drift poll raises: ``drift.detected`` and ``drift.resolved``, one per probe
(name, service, daemon, port) that changed, with the fingerprints involved."""

from __future__ import annotations

import logging

from app.drift.rules import Seen

log = logging.getLogger("certpost.drift")


def event_data(server_id: str, seen: Seen) -> dict:
    return {"server_id": server_id, "hostname": seen.hostname or None, "service": seen.service,
            "daemon": seen.daemon, "port": seen.port, "protocol": seen.protocol, "expected": seen.expected,
            "served": seen.served, "error": seen.error, "observed_at": seen.at.isoformat()}


async def record_changes(session, server_id: str, detected: list[Seen], resolved: list[Seen]) -> None:
    for seen in detected:
        log.warning("drift detected on server %s: %s", server_id, event_data(server_id, seen))
    for seen in resolved:
        log.info("drift resolved on server %s: %s:%s %s", server_id, seen.daemon, seen.port, seen.hostname)
