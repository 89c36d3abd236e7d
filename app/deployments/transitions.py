"""Every change of a deployment's outcome, with its event (app/events).

``delivery._record`` calls these instead of setting the row's columns itself, so a deployment
is never applied, failed or superseded without its event, in the same transaction. Deployments
are the platform's (servers belong to no account), so their events are for admins.

A transport failure that will be retried (``retrying``) is not an event: it repeats with every
backoff while an agent is away; only the end of a delivery is (applied, failed for good, or
superseded by a newer generation while it was on its way).
"""

from __future__ import annotations

from datetime import datetime

from app.accounts.caller import Caller
from app.deployments.models import Deployment
from app.deployments.policy import next_attempt_at
from app.events import EventKind, record


def _subjects(deployment: Deployment) -> dict:
    return {"deployment": deployment.id, "server": deployment.server_id}


def applied(session, deployment: Deployment, generation: int, held_back: list[dict], caller: Caller, *,
            now: datetime, moved: bool) -> None:
    """The agent applied ``generation`` (``held_back``: names it kept on what they served). When
    the row was raised meanwhile (``moved``) it stays due for the newer generation."""
    if not moved:
        deployment.status, deployment.applied_at, deployment.last_error = "applied", now, None
        deployment.failed_names = held_back
    record(session, EventKind.DEPLOYMENT_APPLIED, caller, account_id=None, subjects=_subjects(deployment),
           data={"generation": generation,
                 "failed_names": [{k: f.get(k) for k in ("name", "service", "fingerprint", "code")} for f in held_back]})


def failed(session, deployment: Deployment, generation: int, condition: dict, caller: Caller, *, now: datetime,
           moved: bool, retryable: bool, base: float, cap: float) -> None:
    """``generation`` did not apply. A row raised meanwhile (``moved``) goes on with the newer
    generation: ``deployment.superseded``. Otherwise a retryable failure waits for its backoff
    (no event), and any other is ``failed`` for good: ``deployment.failed``."""
    if moved:
        record(session, EventKind.DEPLOYMENT_SUPERSEDED, caller, account_id=None, subjects=_subjects(deployment),
               data={"generation": generation, "superseded_by": deployment.generation, "condition": condition})
        return
    deployment.last_error = condition
    if retryable:
        deployment.status = "retrying"
        deployment.next_attempt_at = next_attempt_at(now, deployment.attempts, base=base, cap=cap)
        return
    deployment.status = "failed"
    record(session, EventKind.DEPLOYMENT_FAILED, caller, account_id=None, subjects=_subjects(deployment),
           data={"generation": generation, "condition": condition})
