"""The parts of the OpenAPI document no route states itself: tag descriptions, the shared path
parameters, examples of success bodies taken from their schemas, and what public operations are.

Client generators (openapi-typescript, openapi-generator) read this document; ``finish_document``
runs once after ``app.problems.document_problems`` and its result is what ``GET /openapi.json``
and ``certpost openapi`` return. tests/test_contract.py holds every operation to the conventions
(operationId, summary, description, parameter and property descriptions, examples).
"""

from __future__ import annotations

import copy
from typing import Any

TAGS: list[dict[str, str]] = [
    {"name": "accounts", "description": "Customer accounts and API tokens. Admin tokens only. A customer "
     "token acts for its one account: it sees and binds only that account's domains and certificates."},
    {"name": "servers", "description": "Mail servers (admin only): their host name, software and agent, "
     "the server-wide mail certificate, and the capacity warnings."},
    {"name": "deployments", "description": "What the agent of a server is asked to serve (admin only): the "
     "deployment history, pushing again now, and a preview of the desired configuration."},
    {"name": "domains", "description": "Hosted domains, the certificate bound to each one's webmail "
     "(`webmail.<domain>`) and mail (`mail.<domain>`), and the TLS status a client would see."},
    {"name": "certificates", "description": "Certificates with their private keys: upload (PEM or PKCS#12), "
     "self-signed, list with filters, replace in place, delete. Keys are write-only."},
    {"name": "acme", "description": "ACME issuance: DNS providers for dns-01, certificate orders run by the "
     "worker, and renewing a certificate now."},
    {"name": "events", "description": "The audit trail: every change a token or the worker made (certificates, "
     "orders, renewals, bindings, server-level certificates, deployments, tokens), with its author; a customer "
     "sees its own account's events."},
    {"name": "webhooks", "description": "Signed HTTP callbacks for events (Standard Webhooks 1.0): a URL, "
     "the event kinds it wants, its deliveries with every attempt, redelivery. A customer's webhook gets its own "
     "account's events and may only reach public addresses."},
    {"name": "operations", "description": "Liveness and readiness for load balancers and orchestrators; "
     "no token needed."},
]

PATH_PARAMETERS: dict[str, tuple[str, str | int]] = {
    "name": ("The domain name (A-labels or Unicode), e.g. `example.com`.", "example.com"),
    "service": ("`webmail` (the name `webmail.<domain>`) or `mail` (the name `mail.<domain>`).", "mail"),
    "server_id": ("The server's id, as `POST /v1/servers` returned it.", "5b0f3c2e-8a41-4d5e-9f6a-1c2d3e4f5a6b"),
    "certificate_id": ("The certificate's id.", "0f6c1a9e-3b2d-4c8e-a1f0-7d6e5c4b3a29"),
    "deployment_id": ("The deployment's id, from the server's deployment list.", "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d"),
    "provider_id": ("The DNS provider's id.", "3e2d1c0b-9a8f-4e7d-b6c5-a4b3c2d1e0f9"),
    "order_id": ("The certificate order's id, from the `Location` of `POST /v1/certificate-orders`.",
                 "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"),
    "event_id": ("The event's id (an increasing integer).", 1),
    "token_id": ("The token's id (not its secret).", "1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a"),
    "request_id": ("The certificate request's id, from the `Location` of `POST /v1/certificate-requests`.",
                   "4c3b2a19-0f8e-4d7c-9b6a-5f4e3d2c1b0a"),
    "enrolment_token_id": ("The enrolment token's id (not the token).", "2f1e0d9c-8b7a-4695-a4b3-c2d1e0f9a8b7"),
    "webhook_id": ("The webhook's id, from the `Location` of `POST /v1/webhooks`.",
                   "4c3b2a19-8f7e-4d6c-9b5a-3f2e1d0c9b8a"),
    "delivery_id": ("The delivery's id (its `webhook-id` header), from the webhook's delivery list.",
                    "b1a2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"),
}
"""Path parameters by name: one description for every operation that names a resource the same way."""

_METHODS = {"get", "put", "post", "delete", "patch"}


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def example_of(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """The schema's first example, following a ``$ref``, an array of one or a ``oneOf``; None when it has none."""
    schema = _resolve(doc, schema)
    if schema.get("examples"):
        return copy.deepcopy(schema["examples"][0])
    if schema.get("oneOf"):  # a union discriminated by a kind: the first kind's example
        return example_of(doc, schema["oneOf"][0])
    if schema.get("type") == "array" and "items" in schema:
        item = example_of(doc, schema["items"])
        return None if item is None else [item]
    return None


def _model_examples() -> dict[str, list[Any]]:
    """Each answer model's ``examples`` by schema name, as written (``null`` members included).

    FastAPI writes the document with ``exclude_none``, which also drops the ``null`` members of
    examples (``"revoked_at": null``); an example must show every required member, so they are
    put back from the models.
    """
    from pydantic import BaseModel

    found: dict[str, list[Any]] = {}
    seen: set[str] = set()
    stack: list[type[BaseModel]] = [BaseModel]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if not cls.__module__.startswith("app.") or cls.__module__.startswith("app.agent"):
            continue
        if cls.__name__ in seen:
            found.pop(cls.__name__, None)  # two models of one name: FastAPI qualifies them anyway
            continue
        seen.add(cls.__name__)
        extra = cls.model_config.get("json_schema_extra")
        if isinstance(extra, dict) and extra.get("examples"):
            found[cls.__name__] = copy.deepcopy(extra["examples"])
    return found


REQUEST_ID_HEADER = {
    "description": "The request's id: the client's `X-Request-ID` when it is 1 to 128 characters of "
                   "`A-Za-z0-9._:+=@/-` starting with a letter or digit, else a new one. Every log line of the "
                   "request carries it; quote it when reporting an error (a 500 too).",
    "schema": {"type": "string", "maxLength": 128}, "example": "4f1c2a9be0d34e6b8c5a7d9e1f203b4c",
}
REQUEST_ID_REF = {"$ref": "#/components/headers/X-Request-ID"}


def _request_id_everywhere(doc: dict[str, Any]) -> None:
    """Every answer carries ``X-Request-ID`` (app/kit/requestlog.py): one shared component,
    referenced from every response of every operation."""
    doc.setdefault("components", {}).setdefault("headers", {})["X-Request-ID"] = REQUEST_ID_HEADER
    for item in doc.get("paths", {}).values():
        for method, operation in item.items():
            if method in _METHODS:
                for status, response in operation.get("responses", {}).items():
                    operation["responses"][status] = {**response, "headers": {**response.get("headers", {}),
                                                                              "X-Request-ID": REQUEST_ID_REF}}


def finish_document(doc: dict[str, Any]) -> dict[str, Any]:
    _request_id_everywhere(doc)
    doc["tags"] = TAGS
    schemas = doc.get("components", {}).get("schemas", {})
    for name, examples in _model_examples().items():
        if name in schemas:
            schemas[name]["examples"] = examples
    for item in doc.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            if not operation.get("security"):
                operation["security"] = []  # public on purpose (the linter asks to say so)
            for parameter in operation.get("parameters", []):
                known = PATH_PARAMETERS.get(parameter["name"]) if parameter["in"] == "path" else None
                if known:
                    parameter.setdefault("description", known[0])
                    parameter.setdefault("example", known[1])
            body = operation.get("requestBody", {}).get("content", {})
            for media in body.values():
                if "example" not in media and "examples" not in media:
                    example = example_of(doc, media.get("schema", {}))
                    if example is not None:
                        media["example"] = example
            for status, response in operation.get("responses", {}).items():
                if not status.startswith("2"):
                    continue
                for media in response.get("content", {}).values():
                    if "example" not in media and "examples" not in media:
                        example = example_of(doc, media.get("schema", {}))
                        if example is not None:
                            media["example"] = example
    return doc
