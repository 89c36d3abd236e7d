"""Path and query strings get the same character rule as request bodies (app/kit/text.py).

Installed as an application-wide dependency, so it runs after routing (an unknown path stays a
404) and before any handler or database query sees the value: a NUL in
``GET /v1/certificates/%00`` is a 422 ``validation_error`` on every backend, instead of the
500 PostgreSQL's ``text`` type would cause. Every query parameter is checked, declared or not.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from app.kit.text import refused_character


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
