"""Refusals about certificate requests, each with its stable code."""

from __future__ import annotations

from app.problems import Conflict, RuleViolation


class InvalidRequestName(RuleViolation):
    """A requested name is not a valid host name (or a wildcard in the left-most label only)."""

    code, title = "invalid_name", "Not a valid host name"


class RequestKeyMismatch(RuleViolation):
    """The imported certificate's public key is not the key generated for this request: the CA
    was sent another CSR, or this is another request's certificate."""

    code, title = "certificate_request_key_mismatch", "The certificate is not for this request's key"


class RequestCompleted(Conflict):
    """The request's certificate was already imported (its key moved into that certificate):
    upload a renewed certificate with `PUT /v1/certificates/{id}`, or create a new request."""

    code, title = "certificate_request_completed", "The certificate for this request was already imported"
