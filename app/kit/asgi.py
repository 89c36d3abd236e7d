"""ASGI helpers shared by the controller's size limit (``app/limits.py``) and the agent's
request gate (``app/agent/guard.py``); no I/O of their own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Receive = Callable[[], Awaitable[dict]]


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the application a body already read (and checked) in one
    message, then passes on whatever the client sends next (``http.disconnect``)."""
    delivered = False

    async def replay() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
