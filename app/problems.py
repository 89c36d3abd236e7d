"""Errors as classes, written out as RFC 9457 ``application/problem+json``.

Every refusal the API can give is a subclass of ``AppError`` with an HTTP status, a stable
``code`` slug (clients switch on it), a title and a docstring saying when it happens.
``install_handlers`` maps them, FastAPI's validation errors and anything unexpected, so that no
request ever answers a bare 500 page, and no submitted value (a private key, say) is ever echoed
back.

The classes are also the contract: ``document_problems`` writes the OpenAPI document's one
``Problem`` schema from them (every ``code``, every extension member of ``EXTENSIONS``), lists
the exact codes each operation can answer per status, with an example body for each, and
``problem_pages`` serves the page every ``type`` URI (``/problems/<code>``, RFC 9457 section
3.1.1: a URI reference resolved against the request's URI) points at.
"""

from __future__ import annotations

import html
import inspect
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("certpost")

PROBLEM_TYPE_BASE = "/problems/"
"""Relative ``type`` URIs: they resolve against the API that answered, which serves the page."""
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Extension:
    """An extension member (RFC 9457 section 3.2) some problems carry, as the schema documents it."""

    schema: dict[str, Any]
    description: str
    example: Any


EXTENSIONS: dict[str, Extension] = {
    "errors": Extension(
        {"type": "array", "items": {"$ref": "#/components/schemas/ValidationIssue"}},
        "`validation_error`: every reason the request is malformed (never the submitted value).",
        [{"loc": ["body", "certificate_id"], "message": "Field required", "type": "missing"}],
    ),
    "kind": Extension(
        {"type": "string"},
        "`unknown_event_kind`: the event kind that is not one certpost records.",
        "certificate.exploded",
    ),
    "hostname": Extension(
        {"type": "string"},
        "`hostname_not_covered`, `wildcard_public_suffix`: the host name the certificate had to serve.",
        "mail.example.com",
    ),
    "advice": Extension(
        {"type": "string"},
        "`sni_unsupported`: what to do instead, for this server's software.",
        "Postfix with Dovecot serves per-domain mail certificates; on this server, use the server-wide "
        "certificate and tell mail users to connect to mx1.example.net.",
    ),
    "recommended_client_hostname": Extension(
        {"type": "string"},
        "`sni_unsupported`: the host name mail clients should use instead (the server's own).",
        "mx1.example.net",
    ),
    "bindings": Extension(
        {"type": "integer", "minimum": 1},
        "`certificate_in_use`: how many bindings (domain services, server-wide uses) hold the certificate.",
        2,
    ),
    "domains": Extension(
        {"type": "integer", "minimum": 1},
        "`server_in_use`: how many domains still use the server.",
        12,
    ),
    "name": Extension(
        {"type": "string"},
        "`name_not_allowed`: the name that is not under a domain of the caller's account.",
        "webmail.example.org",
    ),
    "parameter": Extension(
        {"type": "string"},
        "`unknown_parameter`: the (first) query parameter the operation does not take.",
        "acount_id",
    ),
    "allowed": Extension(
        {"type": "array", "items": {"type": "string"}},
        "`unknown_parameter`: every query parameter the operation takes (empty: none).",
        ["account_id", "count", "cursor", "limit"],
    ),
    "certificate_id": Extension(
        {"type": "string"},
        "`certificate_exists`: the certificate of the same owner that already holds the material (when known).",
        "0f6c1a9e-3b2d-4c8e-a1f0-7d6e5c4b3a29",
    ),
    "location": Extension(
        {"type": ["string", "null"]},
        "`idempotency_response_unreadable`: the URL of what the first request created (its `Location`), "
        "null when it answered without one.",
        "/v1/servers/0f6c1a9e-3b2d-4c8e-a1f0-7d6e5c4b3a29",
    ),
    "database": Extension(
        {"type": "string", "enum": ["unreachable"]},
        "`database_unavailable` from `GET /readyz`: the state of the database.",
        "unreachable",
    ),
}
"""Every extension member any problem carries; each ``AppError`` names its own in ``extensions``."""


class AppError(Exception):
    """Base of every refusal; the docstring of each subclass says when it is answered (its page)."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    #: seconds a client should wait before retrying (``Retry-After``, RFC 9110 section 10.2.3);
    #: set on the 503s that mean "busy or away for a moment", not on refusals
    retry_after: ClassVar[int | None] = None
    #: the extension members (keys of ``EXTENSIONS``) this error adds to its body
    extensions: ClassVar[tuple[str, ...]] = ()
    #: a realistic ``detail`` for the documentation's example (default: the title)
    example_detail: ClassVar[str | None] = None

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


class BadRequest(AppError):
    """The body could not be parsed at all (broken JSON or multipart): nothing was read."""

    example_detail = "There was an error parsing the body"


class NotFound(AppError):
    """The resource does not exist, or the token may not see it (a customer never learns which)."""

    status, code, title = 404, "not_found", "Not found"
    example_detail = "domain not found"


class Unauthenticated(AppError):
    """No ``Authorization: Bearer <token>`` header, or the token is unknown or revoked."""

    status, code, title = 401, "unauthenticated", "Authentication required"
    example_detail = "the token is unknown or revoked"


class Forbidden(AppError):
    """The token is valid but its role may not do this (an admin-only route, another account)."""

    status, code, title = 403, "forbidden", "Not allowed for this token"
    example_detail = "this route needs an admin token"


class MethodNotAllowed(AppError):
    """The path exists but not with this HTTP method (the ``Allow`` header lists those it has)."""

    status, code, title = 405, "method_not_allowed", "Method Not Allowed"


class Conflict(AppError):
    """The request clashes with the current state of the resource."""

    status, code, title = 409, "conflict", "Conflict"


class RuleViolation(AppError):
    """A well-formed request that breaks a product rule (domain.md)."""

    status, code, title = 422, "rule_violation", "The request breaks a rule"


class ValidationFailed(AppError):
    """A parameter or the body is malformed: a missing or unknown field, a value of the wrong type
    or out of bounds, a control character in any string. ``errors`` lists each reason without the
    submitted value (a private key must never be echoed)."""

    status, code, title = 422, "validation_error", "The request is malformed"
    extensions = ("errors",)
    example_detail = "body.certificate_id: Field required"


class PayloadTooLarge(AppError):
    """The body is larger than ``CERTPOST_MAX_BODY_BYTES``; it was not read."""

    status, code, title = 413, "payload_too_large", "Request body too large"
    example_detail = "the request body is larger than 1048576 bytes"


class InternalError(AppError):
    """A bug: logged with its traceback, answered without any detail. Never part of the contract."""

    status, code, title = 500, "internal_error", "Internal error"
    example_detail = "The server failed to handle the request; it has been logged."


class DatabaseUnavailable(AppError):
    """The database is restarting or unreachable: retry shortly (RFC 9110 section 15.6.4).

    Raised for no rule; app/outage.py answers it for any error that means an outage.
    """

    status, code, title = 503, "database_unavailable", "The database is unavailable"
    retry_after = 2
    extensions = ("database",)
    example_detail = "The database cannot be reached right now; retry shortly."


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def internal_error(request: Request, exc: BaseException) -> JSONResponse:
    """A bug: logged with its traceback, answered 500 ``internal_error`` without any detail, with
    the request's ``X-Request-ID`` (this answer is sent outside app.kit.requestlog, which left the
    id in the scope) so the caller can quote the id that finds the traceback in the log."""
    from app.kit.requestlog import SCOPE_KEY

    request_id = request.scope.get(SCOPE_KEY)
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc,
              extra={"request_id": request_id} if request_id else None)
    return problem_response(500, InternalError(InternalError.example_detail).body(),
                            {"X-Request-ID": request_id} if request_id else None)


def _validation_problem(exc: RequestValidationError) -> dict[str, Any]:
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "message": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['message']}" for e in errors)[:2000]
    return ValidationFailed(detail, errors=errors).body()


_HTTP_ERRORS: dict[int, type[AppError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
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
        known = _HTTP_ERRORS.get(exc.status_code)
        code = known.code if known else f"http_{exc.status_code}"
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

    loc: list[str] = Field(description="Where: `body`, `query`, `path` or `header`, then the field's path.",
                           examples=[["body", "certificate_id"]])
    message: str = Field(description="What is wrong, in English.", examples=["Field required"])
    type: str = Field(description="pydantic's error type, e.g. `missing`, `string_too_long`, `value_error`.",
                      examples=["missing"])


# -- the catalogue: every code, from the classes ------------------------------------------------


@dataclass(frozen=True)
class ProblemKind:
    """One ``code`` as documented: the classes raising it agree on status and title."""

    code: str
    status: int
    title: str
    description: str
    extensions: tuple[str, ...]
    example_detail: str


def _subclasses(cls: type[AppError]) -> list[type[AppError]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def error_classes() -> list[type[AppError]]:
    """Every ``AppError`` subclass of the API (the feature modules are imported first)."""
    import app.main  # noqa: F401 - importing the routers imports every module that defines errors

    return _subclasses(AppError)


def catalogue() -> dict[str, ProblemKind]:
    """Every code the API can answer, by code, sorted: title, status and description from the
    class (its docstring; the first class with one when several share a code)."""
    kinds: dict[str, ProblemKind] = {}
    for cls in error_classes():
        if cls.__module__.startswith("app.agent"):
            continue  # the agent's own app has its own problems (app/agent/problems.py)
        doc = inspect.getdoc(cls) if "__doc__" in cls.__dict__ and cls.__doc__ else ""
        known = kinds.get(cls.code)
        if known is None:
            kinds[cls.code] = ProblemKind(cls.code, cls.status, cls.title, doc or cls.title, tuple(cls.extensions),
                                          cls.example_detail or cls.title)
        else:
            merged = tuple(dict.fromkeys(known.extensions + tuple(cls.extensions)))
            description = known.description if known.description != known.title or not doc else doc
            kinds[cls.code] = ProblemKind(known.code, known.status, known.title, description, merged,
                                          known.example_detail)
    return dict(sorted(kinds.items()))


def example_body(kind: ProblemKind) -> dict[str, Any]:
    body = {"type": PROBLEM_TYPE_BASE + kind.code, "title": kind.title, "status": kind.status,
            "detail": kind.example_detail, "code": kind.code}
    body.update({name: EXTENSIONS[name].example for name in kind.extensions})
    return body


def problem_schema(kinds: dict[str, ProblemKind]) -> dict[str, Any]:
    """The one ``Problem`` schema: RFC 9457's members, certpost's ``code`` (every code, enumerated)
    and every extension member some problem carries."""
    properties: dict[str, Any] = {
        "type": {"type": "string", "format": "uri-reference",
                 "description": "`/problems/<code>`, relative to the API: a page describing the code.",
                 "examples": ["/problems/hostname_not_covered"]},
        "title": {"type": "string", "description": "A short summary of the code (the same for every occurrence).",
                  "examples": ["The certificate does not cover the host name"]},
        "status": {"type": "integer", "description": "The HTTP status code, repeated.", "examples": [422]},
        "detail": {"type": "string", "description": "What happened this time, in English; not for programs.",
                   "examples": ["the certificate (webmail.example.com) does not cover mail.example.com"]},
        "code": {"type": "string", "enum": sorted(kinds), "description": "The stable code to switch on.",
                 "examples": ["hostname_not_covered"]},
    }
    for name, ext in EXTENSIONS.items():
        properties[name] = {**ext.schema, "description": ext.description}
    return {
        "title": "Problem",
        "type": "object",
        "description": "RFC 9457 problem details with certpost's stable `code`, sent as "
                       "`application/problem+json` for every error. Extension members appear only with the "
                       "codes their descriptions name.",
        "properties": properties,
        "required": ["type", "title", "status", "detail", "code"],
        "examples": [example_body(kinds["hostname_not_covered"])] if "hostname_not_covered" in kinds else [],
    }


# -- OpenAPI: what each operation can answer ------------------------------------------------------

_PROBLEM_REF = "#/components/schemas/Problem"


def _coded_schema(codes: list[str]) -> dict[str, Any]:
    return {"allOf": [{"$ref": _PROBLEM_REF},
                      {"type": "object", "required": ["code"],
                       "properties": {"code": {"type": "string", "enum": codes}}}]}


def _codes_of(response: dict[str, Any]) -> list[str]:
    schema = response.get("content", {}).get(PROBLEM_JSON, {}).get("schema", {})
    for part in schema.get("allOf", []):
        codes = part.get("properties", {}).get("code", {}).get("enum")
        if codes:
            return list(codes)
    return []


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route, from the error classes it can raise.

    Each status lists its codes (in the description, and enumerated in the schema's ``code``);
    ``document_problems`` adds the codes every operation can give and an example per code.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for err in (Unauthenticated, *errors):
        entry = out.setdefault(err.status, {"description": "", "content": {PROBLEM_JSON: {"schema": _coded_schema([])}}})
        codes = entry["content"][PROBLEM_JSON]["schema"]["allOf"][1]["properties"]["code"]["enum"]
        if err.code not in codes:
            codes.append(err.code)
        line = f"`{err.code}`: {err.title}"
        if line not in entry["description"]:
            entry["description"] = "; ".join(filter(None, [entry["description"], line]))
    return out


_BODY_METHODS = {"post", "put", "patch"}  # what app.limits.BodySizeLimit reads
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
_NO_DATABASE = {"/healthz"}  # answers without touching the database


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe errors as they are sent (see ``document_problems``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from app.contract import finish_document
            from app.httpdocs import document_http

            # the headers' problems (412, 409, 422) first, so that document_problems gives them
            # their schema, codes and examples like every other error
            app.openapi_schema = finish_document(document_problems(document_http(generate())))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's error responses into what the handlers above really send.

    Every error is ``application/problem+json`` with the one Problem schema (FastAPI would say
    ``application/json``), its ``code`` enumerated per response, and one example per code.
    FastAPI's own ``HTTPValidationError`` shape is never sent (validation errors are problems
    with ``errors``), so it goes. An operation that takes a token may answer 401 (missing,
    unknown or revoked). Every operation may answer 422 (a control character in any parameter, or
    a query parameter it does not take: app/inputs.py); an operation that reads a body may answer 413 (app/limits.py) and 400 (a body
    that cannot be parsed at all, such as broken multipart); every operation that reads the
    database may answer 503 (app/outage.py).
    """
    from app.inputs import UnknownParameter  # app.inputs builds on this module

    kinds = catalogue()
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["ValidationIssue"] = ValidationIssue.model_json_schema()
    schemas["Problem"] = problem_schema(kinds)
    for path, path_item in doc.get("paths", {}).items():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                add_problem(responses, Unauthenticated)
            else:
                _drop(responses, Unauthenticated)
            add_problem(responses, ValidationFailed)
            add_problem(responses, UnknownParameter)
            if method in _BODY_METHODS:
                add_problem(responses, PayloadTooLarge)
                if "requestBody" in operation:
                    add_problem(responses, BadRequest)
            if path not in _NO_DATABASE:
                add_problem(responses, DatabaseUnavailable)
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    codes = _codes_of(response)
                    response["content"] = {PROBLEM_JSON: {
                        "schema": _coded_schema(codes),
                        "examples": {code: {"summary": kinds[code].title, "value": example_body(kinds[code])}
                                     for code in codes},
                    }}
    return doc


def add_problem(responses: dict[str, Any], err: type[AppError]) -> None:
    """List ``err`` in an operation's ``responses``: its status, its code in the enum and the description."""
    status = str(err.status)
    entry = responses.setdefault(status, {"description": ""})
    if entry.get("description") == "Validation Error":  # FastAPI's own 422
        entry["description"] = ""
        entry.pop("content", None)
    codes = _codes_of(entry)
    if err.code not in codes:
        codes.append(err.code)
    entry["content"] = {PROBLEM_JSON: {"schema": _coded_schema(codes)}}
    line = f"`{err.code}`: {err.title}"
    if line not in entry["description"]:
        entry["description"] = "; ".join(filter(None, [entry["description"], line]))


def _drop(responses: dict[str, Any], err: type[AppError]) -> None:
    """An operation without a token never answers 401 (``responses()`` lists it by default)."""
    entry = responses.get(str(err.status))
    if entry is None:
        return
    codes = [c for c in _codes_of(entry) if c != err.code]
    if not codes:
        del responses[str(err.status)]
        return
    entry["content"] = {PROBLEM_JSON: {"schema": _coded_schema(codes)}}
    entry["description"] = "; ".join(p for p in entry["description"].split("; ") if not p.startswith(f"`{err.code}`"))


# -- the pages every ``type`` URI points at ------------------------------------------------------


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )


def install_problem_pages(app: FastAPI) -> None:
    """``GET /problems`` (every code) and ``GET /problems/{code}`` (one), generated from the classes,
    so that every problem's ``type`` resolves to a page describing its code. Plain Starlette routes:
    documentation pages, like /docs, outside the API's operations."""

    async def problem_index(_request: Request) -> HTMLResponse:
        rows = "".join(
            f"<tr><td><a href=\"/problems/{k.code}\"><code>{k.code}</code></a></td><td>{k.status}</td>"
            f"<td>{html.escape(k.title)}</td></tr>"
            for k in catalogue().values()
        )
        return _page("certpost problem codes",
                     "<h1>certpost problem codes</h1><p>Every error is <code>application/problem+json</code> "
                     "(RFC 9457) with a stable <code>code</code>; its <code>type</code> is this page's link.</p>"
                     f"<table><tr><th>code</th><th>status</th><th>title</th></tr>{rows}</table>")

    async def problem_page(request: Request) -> HTMLResponse:
        code = request.path_params["code"]
        kind = catalogue().get(code)
        if kind is None:
            raise NotFound("no such problem code")
        members = "".join(f"<li><code>{name}</code>: {html.escape(EXTENSIONS[name].description)}</li>"
                          for name in kind.extensions)
        extra = f"<h2>Extension members</h2><ul>{members}</ul>" if members else ""
        return _page(f"{kind.code}: {kind.title}",
                     f"<h1><code>{kind.code}</code></h1><p><strong>{html.escape(kind.title)}</strong> "
                     f"(HTTP {kind.status})</p><p>{html.escape(kind.description)}</p>{extra}"
                     "<p><a href=\"/problems\">Every problem code</a></p>")

    app.add_route("/problems", problem_index, methods=["GET"], include_in_schema=False)
    app.add_route("/problems/{code}", problem_page, methods=["GET"], include_in_schema=False)
