"""The log formatters (app/kit/logs.py): one JSON object per line, and redaction of secrets
whatever code logs them."""

from __future__ import annotations

import json
import logging

from app.kit.logs import JsonFormatter, TextFormatter, redact, request_id_var
from tests.support.pki import CA


def record(message: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("certpost.test", logging.WARNING, __file__, 1, message, args, exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_redact_masks_keys_bearer_credentials_and_token_secrets():
    issued = CA.create("redact").issue(["a.test"])
    text = redact(f"body was {issued.key_pem} and Authorization: Bearer abc.DEF-123 token cpt_tid42_s3cr3tS3CR3T")
    assert "PRIVATE KEY" not in text and issued.key_pem.splitlines()[1] not in text
    assert "abc.DEF-123" not in text and "Bearer [redacted]" in text
    assert "s3cr3tS3CR3T" not in text and "cpt_tid42_[redacted]" in text
    # A key cut short (a truncated message) is masked to the end.
    assert "MIIE" not in redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg")


def test_json_line_has_the_fields_and_escapes_newlines():
    token = request_id_var.set("req-1")
    try:
        line = JsonFormatter().format(record("two\nlines %s", "Bearer zzz", method="GET", route="/v1/x",
                                             status=200, duration_ms=1.5))
    finally:
        request_id_var.reset(token)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "warning" and data["logger"] == "certpost.test"
    assert data["message"] == "two\nlines Bearer [redacted]"
    assert data["request_id"] == "req-1" and data["route"] == "/v1/x" and data["status"] == 200
    assert data["time"].endswith("Z") and "T" in data["time"]


def test_tracebacks_are_redacted_too():
    issued = CA.create("tb").issue(["a.test"])
    try:
        raise ValueError(f"could not parse {issued.key_pem}")
    except ValueError:
        import sys

        rec = record("failed", exc_info=sys.exc_info())
    for formatter in (JsonFormatter(), TextFormatter()):
        out = formatter.format(rec)
        assert "PRIVATE KEY" not in out and "ValueError" in out
