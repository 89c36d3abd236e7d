"""One shape for every status condition: why an order, a renewal or a deployment is where it is.

    {"code": "dns_update_refused", "message": "…", "step": "dns_update", "at": "2026-…Z",
     "details": {...}}

``code`` is a stable slug to branch on, ``message`` words for people, ``step`` where in a
multi-step process it happened (optional), ``at`` when it was observed, ``details`` what only
some conditions have (an ACME CA's problem document, RFC 8555 section 6.7; the agent's daemon
and its output). Orders (``error``), certificates (``renewal_error``) and deployments
(``last_error``, each attempt's ``error``) store and show this shape, written only by
``condition`` (the idea of cert-manager's one condition setter, pkg/api/util/conditions.go).
Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.kit.time import as_utc


def condition(code: str, message: str, *, at: datetime, step: str | None = None,
              details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A condition; ``details`` whose value is None are left out, and so is an empty ``details``."""
    out: dict[str, Any] = {"code": code, "message": message, "at": as_utc(at).isoformat()}
    if step:
        out["step"] = step
    kept = {k: v for k, v in (details or {}).items() if v is not None}
    if kept:
        out["details"] = kept
    return out


_LEGACY_DETAILS = ("problem", "timed_out", "status", "daemon", "message", "rolled_back", "missing")


def read(stored: dict[str, Any] | None, *, at: datetime | None = None) -> dict[str, Any] | None:
    """A stored condition in this shape. Rows written before migration 0012 hold the older shapes
    (``detail`` instead of ``message``, extras at the top, no ``at``): they are read as the new
    one, with ``at`` from the row (``at``: when the row last changed), so clients see one shape."""
    if not stored:
        return None
    if "message" in stored and "detail" not in stored:
        return stored
    extras = {k: stored[k] for k in _LEGACY_DETAILS if stored.get(k) is not None}
    out: dict[str, Any] = {"code": stored.get("code") or "unknown", "message": str(stored.get("detail") or ""),
                           "at": as_utc(at).isoformat() if at else None}
    if stored.get("step"):
        out["step"] = stored["step"]
    if extras:
        out["details"] = extras
    return out
