"""ASGI middleware shared by the controller and the agent: a request id, and one access line.

``X-Request-ID``: a client's (or a proxy's) id is kept when it is 1 to 128 characters of
``A-Z a-z 0-9 . _ : + = @ / -`` starting with a letter or digit (so it cannot forge a log
field, break a header or flood a line); anything else is replaced by a fresh one. The id is
echoed on the response and set in :data:`app.kit.logs.request_id_var` for as long as the
request runs, so every line logged meanwhile carries it.

The access line (logger ``certpost.access``) has ``method``, ``route``, ``status`` and
``duration_ms``. ``route`` is the template of the route that answered (``/v1/domains/{domain}``),
never the raw path: paths carry customer domain names and ids, and a template keeps log
queries and the latency histogram (``observe``) to one series per route. A request no route
answered is ``unmatched``. Headers, query strings and bodies are never logged.

The middleware sits inside Starlette's ``ServerErrorMiddleware``: an unhandled exception is
logged here with status 500 and its request id, while the 500 itself is sent from outside. So
the id is also left in the scope (``SCOPE_KEY``), where the catch-all handler that writes that
500 (``app.problems.internal_error``) finds it and sends the header too.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from app.kit.logs import request_id_var

HEADER = b"x-request-id"
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=@/-]{0,127}")
UNMATCHED = "unmatched"
ROUTE_KEY = "certpost.route"  # a scope key for answers given outside the router (/metrics)
SCOPE_KEY = "certpost.request_id"  # the request's id, for answers sent outside this middleware (a 500)

Observer = Callable[[str, str, int, float], None]  # method, route, status, seconds


def accepted_request_id(value: bytes | None) -> str | None:
    """The client's id when it is safe to keep, else None."""
    if not value:
        return None
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _VALID.fullmatch(text) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def route_template(scope) -> str:
    """The template of the route that answered, as the router left it in the scope."""
    if ROUTE_KEY in scope:
        return scope[ROUTE_KEY]
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if isinstance(path, str) and path:
        return path
    return UNMATCHED


class RequestLog:
    """See the module docstring. ``observe`` (optional) receives every finished request."""

    def __init__(self, app, *, logger: str = "certpost.access", observe: Observer | None = None) -> None:
        self.app = app
        self.log = logging.getLogger(logger)
        self.observe = observe

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k.lower() == HEADER), None)
        request_id = accepted_request_id(given) or new_request_id()
        scope[SCOPE_KEY] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            method = scope.get("method", "")
            if self.observe is not None:
                self.observe(method, route, status, seconds)
            self.log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %s %.1f ms", method, route, status, seconds * 1000,
                extra={"method": method, "route": route, "status": status,
                       "duration_ms": round(seconds * 1000, 1)},
            )
            request_id_var.reset(token)
