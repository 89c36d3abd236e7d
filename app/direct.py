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
  among them (no exit stack is run); the tests of each route run through this handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.inputs import refuse_control_characters, refuse_unknown_parameters

Resolver = Callable[[Request], Awaitable[dict[str, Any]]]


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

        async def handle(request: Request) -> Response:
            await refuse_control_characters(request)
            await refuse_unknown_parameters(request)
            return await endpoint(**await resolve(request))

        return handle
