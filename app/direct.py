"""Hot read routes whose inputs are resolved by hand instead of by FastAPI's dependency solver.

FastAPI resolves a route's dependency tree on every request (for the TLS status: the two
application-wide input checks, the bearer scheme, the context, the reader, the caller, the
service; about 0.4 ms of a request that should cost under 1 ms, issue 8). A ``DirectRoute``
keeps the endpoint and its signature as they are, so the operation is documented from them like
any other (the OpenAPI document does not change), but its handler builds the endpoint's
arguments with ``resolve(request)``, a plain function written beside the endpoint, and calls it:

- the application-wide checks of ``app.main`` run first, in FastAPI's order
  (``refuse_control_characters``, then ``refuse_unknown_parameters``): a DirectRoute must be
  registered on an application that installs them, as certpost's is;
- errors raised by ``resolve`` or the endpoint reach the same exception handlers
  (problem+json); the endpoint must return a ``Response`` (it is sent as is, no response model
  validation: the hot routes already serialise their answer themselves);
- ``resolve`` must produce what the declared dependencies would: it calls the same dependency
  functions, so a change to one of them is a change to both paths. Nothing with ``yield`` may be
  among them (no exit stack is run); the tests of each route run through this handler;
- ``resolve`` may decline a request by returning None: FastAPI's own handler then solves the
  declared dependencies and validates the parameters as for any route. A list resolves the
  plain cases by hand (``limit=100``, a cursor, ``count=true``) and leaves everything else to
  FastAPI (``limit=abc`` and its 422, ``count=yes``, a date to parse), so no parameter is ever
  read differently from what the declared types say.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Match, Mount

from app.inputs import refuse_control_characters, refuse_unknown_parameters

Resolver = Callable[[Request], Awaitable[dict[str, Any] | None]]


def direct(resolve: Resolver):
    """Mark an endpoint to be called with ``await resolve(request)`` as its keyword arguments
    when it is registered with ``route_class_override=DirectRoute``."""

    def mark(endpoint):
        endpoint.resolve = resolve
        return endpoint

    return mark


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint
        resolve: Resolver = endpoint.resolve
        solved = super().get_route_handler()  # FastAPI's handler, for what ``resolve`` declines

        async def handle(request: Request) -> Response:
            await refuse_control_characters(request)
            await refuse_unknown_parameters(request)
            inputs = await resolve(request)
            if inputs is None:
                return await solved(request)
            return await endpoint(**inputs)

        return handle


# -- routing -----------------------------------------------------------------------------------

class _Shortcut(DirectRoute):
    """A DirectRoute's copy at the head of the application's routes (``shortcut``). It takes
    only what the original would take (a full match: path and method); anything else goes on
    to the routes as before, so a 405 still names the methods it named. Not documented twice."""

    def matches(self, scope):
        match, child_scope = super().matches(scope)
        return (match, child_scope) if match is Match.FULL else (Match.NONE, {})


def _template(context) -> str | None:
    if isinstance(context.original_route, Mount):
        return context.path.rstrip("/") + "/{path:path}"
    return context.path


def _may_overlap(a: str | None, b: str) -> bool:
    """Whether one request path could match both templates; True when unsure (a parameter
    segment is taken to match anything, a ``:path`` parameter anything from there on)."""
    if a is None:
        return True
    left, right = a.split("/"), b.split("/")
    for x, y in zip(left, right, strict=False):
        if ":path}" in x or ":path}" in y:
            return True
        if "{" not in x and "{" not in y and x != y:
            return False
    return len(left) == len(right)


def shortcut(app: FastAPI) -> list[str]:
    """Put a copy of each DirectRoute at the head of ``app``'s routes, when no route before it
    could take a request it takes; returns the paths so placed.

    FastAPI 0.165 keeps each included router as one candidate of the application's routes and
    matches a request against every route of every router before the right one, then once more
    inside it: 120 to 160 µs for a route of the fourth or sixth router on the shared 2-core machine, a tenth of what a TLS
    status costs (issue 8). The copy is tried first, with one regular expression. It changes
    nothing else: the routes before the original could not have matched (checked here on their
    templates and methods, conservatively), so the copy answers exactly the requests the
    original answered, through the same endpoint and dependencies, with the same
    ``scope["route"]`` path for the access log and ``unknown_parameter``."""
    copies: list[_Shortcut] = []
    earlier: list[tuple[str | None, set[str] | None]] = []
    for context in iter_route_contexts(app.router.routes):
        route, methods = context.original_route, context.methods
        if isinstance(route, DirectRoute) and not isinstance(route, _Shortcut) and not any(
                _may_overlap(path, context.path) for path, taken in earlier if taken is None or taken & methods):
            copies.append(_Shortcut(
                context.path, route.endpoint, methods=list(methods), name=route.name,
                response_model=route.response_model, include_in_schema=False,
                dependencies=list(context.dependencies),
                dependency_overrides_provider=context.dependency_overrides_provider))
        earlier.append((_template(context), set(methods) if methods else None))
    app.router.routes[0:0] = copies
    return [c.path for c in copies]
