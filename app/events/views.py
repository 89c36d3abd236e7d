"""What a reader may see of an event's data.

Most kinds carry nothing the account's own tokens may not read. Drift events carry the agent's
probe error text, which names the addresses and ports it dialled: an admin token (or a
platform webhook) reads it, anyone else its stable ``error_code`` and a generic sentence
(``app.drift.rules.event_data_for``, the same rule as the TLS status's ``observed``).
"""

from __future__ import annotations

from typing import Any

from app.drift.rules import event_data_for
from app.events.kinds import EventKind

_DRIFT = (EventKind.DRIFT_DETECTED.value, EventKind.DRIFT_RESOLVED.value)


def data_for(kind: str, data: dict[str, Any], *, detail: bool) -> dict[str, Any]:
    return event_data_for(data, detail=detail) if kind in _DRIFT else data
