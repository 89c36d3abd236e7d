"""Path and query strings get the same character rule as request bodies (app/kit/text.py).

Installed as an application-wide dependency, so it runs after routing (an unknown path stays a
404) and before any handler or database query sees the value: a NUL in
``GET /v1/certificates/%00`` is a 422 ``validation_error`` on every backend, instead of the
500 PostgreSQL's ``text`` type would cause. Every query parameter is checked, declared or not.

A query parameter the matched operation does not declare is refused too (422
``unknown_parameter``, ``refuse_unknown_parameters``): the same single place for every operation.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from app.kit.text import refused_character
from app.problems import RuleViolation


def _problems(request: Request) -> list[dict]:
    errors = []
    for where, items in (("path", request.path_params.items()),
                         ("query", request.query_params.multi_items())):
        for name, value in items:
            bad = refused_character(str(name)) or refused_character(str(value))
            if bad is not None:
                label = str(name) if refused_character(str(name)) is None else "?"
                errors.append({
                    "loc": (where, label),
                    "msg": f"control characters are not allowed (found {bad})",
                    "type": "value_error",
                })
    return errors


async def refuse_control_characters(request: Request) -> None:
    errors = _problems(request)
    if errors:
        raise RequestValidationError(errors)


# --- query parameters an operation does not take ---------------------------------------------

class UnknownParameter(RuleViolation):
    """A query parameter the operation does not declare: refused rather than ignored, so a
    misspelt filter (``?acount_id=``) or one this operation does not have (``?sort=``) is never
    read as "no filter" and answered with every row."""

    code, title = "unknown_parameter", "The operation does not take this query parameter"
    extensions = ("parameter", "allowed")
    example_detail = "acount_id: not a parameter of this operation; it takes account_id, count, cursor, limit"


_DECLARED = "_certpost_query_parameters"


def declared_query_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameter names ``route`` takes, its dependencies' included (computed once per
    route: the route's dependency tree does not change after the application is built)."""
    names = getattr(route, _DECLARED, None)
    if names is None:
        names = frozenset(_query_names(route.dependant))
        setattr(route, _DECLARED, names)
    return names


def _query_names(dependant: Dependant):
    for field in dependant.query_params:
        yield field.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


async def refuse_unknown_parameters(request: Request) -> None:
    """Installed application-wide beside ``refuse_control_characters`` (after it, so a control
    character in a name stays a ``validation_error``): one check for every operation, compared
    with what the matched route declares, instead of a check written in each list."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = declared_query_parameters(route)
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in declared]
    if unknown:
        allowed = sorted(declared)
        raise UnknownParameter(
            f"{', '.join(unknown)}: not a parameter of this operation; "
            + (f"it takes {', '.join(allowed)}" if allowed else "it takes no query parameters"),
            parameter=unknown[0],
            allowed=allowed,
        )
