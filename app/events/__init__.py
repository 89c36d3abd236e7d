"""The event log: what changed, when, by whom (docs/architecture.md, "Events").

Services call ``record(session, EventKind.X, caller, account_id=…, subjects=…, data=…)`` in the
transaction that makes the change; ``GET /v1/events`` lists them.
"""

from app.events.kinds import KINDS, EventKind
from app.events.recorder import Actor, record

__all__ = ["KINDS", "Actor", "EventKind", "record"]
