"""Errors as classes, written out as RFC 9457 ``application/problem+json``.

Every refusal the API can give is a subclass of ``AppError`` with an HTTP status, a stable
``code`` slug (clients switch on it) and a title. ``install_handlers`` maps them, FastAPI's
validation errors and anything unexpected, so that no request ever answers a bare 500 page,
and no submitted value (a private key, say) is ever echoed back.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("certpost")

PROBLEM_TYPE_BASE = "https://certpost.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    #: seconds a client should wait before retrying (``Retry-After``, RFC 9110 section 10.2.3);
    #: set on the 503s that mean "busy or away for a moment", not on refusals
    retry_after: ClassVar[int | None] = None

    def __init__(self, detail: str | None = None, **extra: Any):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }

    def headers(self) -> dict[str, str] | None:
        """Response headers the status calls for: the auth scheme on 401, Retry-After on a 503."""
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        if self.retry_after is not None:
            return {"Retry-After": str(self.retry_after)}
        return None


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Unauthenticated(AppError):
    status, code, title = 401, "unauthenticated", "Authentication required"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Not allowed for this token"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class RuleViolation(AppError):
    """A well-formed request that breaks a product rule (domain.md)."""

    status, code, title = 422, "rule_violation", "The request breaks a rule"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class DatabaseUnavailable(AppError):
    """The database is restarting or unreachable: retry shortly (RFC 9110 section 15.6.4).

    Raised for no rule; app/outage.py answers it for any error that means an outage.
    """

    status, code, title = 503, "database_unavailable", "The database is unavailable"
    retry_after = 2


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def internal_error(request: Request, exc: BaseException) -> JSONResponse:
    """A bug: logged with its traceback, answered 500 ``internal_error`` without any detail."""
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    body = {
        "type": PROBLEM_TYPE_BASE + "internal_error",
        "title": "Internal error",
        "status": 500,
        "detail": "The server failed to handle the request; it has been logged.",
        "code": "internal_error",
    }
    return problem_response(500, body)


def _validation_problem(exc: RequestValidationError) -> dict[str, Any]:
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "message": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return {
        "type": PROBLEM_TYPE_BASE + "validation_error",
        "title": "The request is malformed",
        "status": 422,
        "detail": "; ".join(f"{'.'.join(e['loc'])}: {e['message']}" for e in errors)[:2000],
        "code": "validation_error",
        "errors": errors,
    }


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def install_handlers(app: FastAPI) -> None:
    install_openapi(app)

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError):
        return problem_response(exc.status, exc.body(), exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        # exc.errors() carries each submitted value under "input"; it is dropped on purpose.
        return problem_response(422, _validation_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        body = {
            "type": PROBLEM_TYPE_BASE + code,
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "code": code,
        }
        return problem_response(exc.status_code, body, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return internal_error(request, exc)


class ValidationIssue(BaseModel):
    """One reason a request is malformed; the submitted value is never included."""

    loc: list[str]
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, with certpost's stable ``code``.

    Errors may add members (``errors`` for ``validation_error``, ``hostname``, ``advice`` ...).
    """

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[ValidationIssue] | None = Field(None, description="`validation_error`: what is malformed")


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route, from the error classes it can raise."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in (Unauthenticated, *errors):
        entry = out.setdefault(err.status, {"model": Problem, "description": ""})
        line = f"`{err.code}`: {err.title}"
        if line not in entry["description"]:
            entry["description"] = "; ".join(filter(None, [entry["description"], line]))
    return out


# Responses every operation can give, whatever its own errors: the documentation is what is sent.
_UNAUTHENTICATED = f"`{Unauthenticated.code}`: {Unauthenticated.title}"
_MALFORMED = "`validation_error`: The request is malformed (a parameter or the body)"
_UNKNOWN_PARAMETER = "`unknown_parameter`: The operation does not take this query parameter"
_UNPARSABLE = "`bad_request`: The body could not be parsed"
_TOO_LARGE = f"`{PayloadTooLarge.code}`: {PayloadTooLarge.title}"
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_BODY_METHODS = {"post", "put", "patch"}  # what app.limits.BodySizeLimit reads


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe errors as they are sent (see ``document_problems``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's error responses into what the handlers above really send.

    Every error is ``application/problem+json`` with the Problem schema (FastAPI would say
    ``application/json``). FastAPI's own ``HTTPValidationError`` shape is never sent (validation
    errors are problems with ``errors``), so it goes. An operation that takes a token may answer
    401 (missing, unknown or revoked). Every operation may answer 422 (a control
    character in any parameter, or a query parameter it does not take, app/inputs.py); an operation that reads a body may answer 413
    (app/limits.py) and 400 (a body that cannot be parsed at all, such as broken multipart).
    """
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path_item in doc.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "put", "post", "delete", "patch", "head", "options"}:
                continue
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                _describe(responses, "401", _UNAUTHENTICATED)
            _describe(responses, "422", _MALFORMED)
            _describe(responses, "422", _UNKNOWN_PARAMETER)  # app/inputs.py
            if method in _BODY_METHODS:
                _describe(responses, "413", _TOO_LARGE)
                if "requestBody" in operation:
                    _describe(responses, "400", _UNPARSABLE)
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}}
    return doc


def _describe(responses: dict[str, Any], status: str, line: str) -> None:
    entry = responses.setdefault(status, {"description": ""})
    described = entry.get("description", "")
    if described in ("", "Validation Error"):
        entry["description"] = line
    elif line not in described:
        entry["description"] = f"{described}; {line}"
