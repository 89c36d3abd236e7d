"""The OpenAPI document says which headers the API sends and honours (Location, ETag, If-Match,
Idempotency-Key) and the refusals they bring, from the routes themselves where it can.

- every 201 and 202 response documents ``Location``;
- an operation that takes ``If-Match`` may answer 412 ``precondition_failed``;
- an operation that takes ``Idempotency-Key`` may answer 409 ``idempotency_key_in_flight`` or
  ``idempotency_response_unreadable`` and 422 ``idempotency_key_reused``, and its success may be a replay (``Idempotent-Replayed``);
- the operations in ``ETAG_OPERATIONS`` document the ``ETag`` they send;
- every other GET answering JSON documents the body's ``ETag``, ``If-None-Match`` and its 304
  (app/conditional.py).
"""

from __future__ import annotations

from typing import Any

from app.idempotency.http import (
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    IdempotencyResponseUnreadable,
)
from app.preconditions import PreconditionFailed
from app.problems import add_problem

ETAG_OPERATIONS = {
    ("get", "/v1/certificates/{certificate_id}"), ("put", "/v1/certificates/{certificate_id}"),
    ("post", "/v1/certificates"), ("post", "/v1/certificates/import"), ("post", "/v1/certificates/self-signed"),
    ("get", "/v1/servers/{server_id}"), ("patch", "/v1/servers/{server_id}"), ("post", "/v1/servers"),
    ("put", "/v1/servers/{server_id}/mail-certificate"),
    ("put", "/v1/servers/{server_id}/webmail-certificate"), ("delete", "/v1/servers/{server_id}/webmail-certificate"),
    ("get", "/v1/domains/{name}"), ("post", "/v1/domains"),
    ("get", "/v1/domains/{name}/bindings"), ("get", "/v1/domains/{name}/bindings/{service}"),
    ("put", "/v1/domains/{name}/bindings/{service}"),
}

_STRING = {"type": "string"}
LOCATION = {"description": "The URL of what was created (a 202: of the order or deployment to poll).",
            "schema": _STRING}
ETAG = {"description": "A strong entity tag of the resource's stored state: send it as `If-Match` "
        "on a later write of the same resource.", "schema": _STRING}
BODY_ETAG = {"description": "A strong entity tag of this exact body: send it as `If-None-Match` on the "
             "next poll to get 304 with no body while nothing changed.", "schema": _STRING}
CACHE_CONTROL = {"description": "`private, no-cache`: the answer depends on the token; revalidate before reuse.",
                 "schema": _STRING}
IF_NONE_MATCH = {
    "name": "If-None-Match", "in": "header", "required": False,
    "description": "Optional. The `ETag` of the answer you hold; if the answer now would be the same bytes, "
                   "304 with no body (RFC 9110 section 13.1.2). The answer is computed afresh every time, so a "
                   "304 never hides a change.",
    "schema": _STRING, "example": '"Xq2J6dW1d8C0m1bV3hQZxw"',
}
NOT_MODIFIED = {"description": "Not Modified: the answer is the one whose `ETag` you sent (no body).",
                "headers": {"ETag": BODY_ETAG}}
REPLAYED = {"description": "`true` when this is the stored first response to the same `Idempotency-Key`.",
            "schema": _STRING}


def document_http(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the headers and the refusals they bring to FastAPI's document. It runs before
    app.problems.document_problems (app.problems.install_openapi), which gives every error
    response its Problem schema, its codes enumerated and an example per code."""
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            headers = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "header"}
            for status, response in responses.items():
                if status in ("201", "202"):
                    response.setdefault("headers", {})["Location"] = LOCATION
                if (method, path) in ETAG_OPERATIONS and status in ("200", "201"):
                    response.setdefault("headers", {})["ETag"] = ETAG
                if "Idempotency-Key" in headers and status.startswith("2"):
                    response.setdefault("headers", {})["Idempotent-Replayed"] = REPLAYED
            if method == "get" and path.startswith("/v1/") and (method, path) not in ETAG_OPERATIONS \
                    and "application/json" in responses.get("200", {}).get("content", {}):
                responses["200"].setdefault("headers", {}).update({"ETag": BODY_ETAG, "Cache-Control": CACHE_CONTROL})
                responses["304"] = NOT_MODIFIED
                operation.setdefault("parameters", []).append(IF_NONE_MATCH)
            if "If-Match" in headers:
                add_problem(responses, PreconditionFailed)
            if "Idempotency-Key" in headers:
                add_problem(responses, IdempotencyKeyInFlight)
                add_problem(responses, IdempotencyKeyReused)
                add_problem(responses, IdempotencyResponseUnreadable)
    return doc
