"""The agent's errors, answered as RFC 9457 ``application/problem+json`` with a stable ``code``.

One class for both places that refuse: the request gate (``guard.py``, before the body is read,
written straight to the ASGI ``send``) and the API handlers (``app.py``, through FastAPI).
"""

from __future__ import annotations

import json
from typing import Any

PROBLEM_TYPE = "https://certpost.dev/problems/agent/"
PROBLEM_JSON = "application/problem+json"


class AgentProblem(Exception):
    """An error answered as problem+json; ``extra`` adds members (e.g. ``missing``)."""

    def __init__(self, status: int, code: str, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra

    def body(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_TYPE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
            "code": self.code,
            **self.extra,
        }

    def encoded(self) -> bytes:
        return json.dumps(self.body()).encode()
