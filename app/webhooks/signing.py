"""Standard Webhooks 1.0 signatures, as the specification defines them (pure, no I/O).

The specification (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md,
"Signature scheme" and "Webhook headers"):

* the secret is random, at least 24 bytes, shown to the consumer base64-encoded behind the prefix
  ``whsec_``; the HMAC key is the base64-decoded part after the prefix;
* the signed content is ``{msg_id}.{timestamp}.{payload}`` where ``msg_id`` is the ``webhook-id``
  header (the same for every retry of one message, so a consumer can use it to deduplicate),
  ``timestamp`` the ``webhook-timestamp`` header (integer Unix seconds of this attempt) and
  ``payload`` the exact body bytes sent;
* ``webhook-signature`` is a space-separated list of ``v1,<base64 HMAC-SHA256>`` (several during a
  key rotation; certpost sends one).

Neither the id nor the timestamp is customer-controlled and neither can hold a ``.``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from datetime import datetime
from typing import Any

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for at least 24


def new_secret() -> str:
    """A fresh signing secret in the spec's serialisation: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after ``whsec_``."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt: ``v1,<base64 HMAC-SHA256>``."""
    if "." in msg_id:
        raise ValueError("a webhook-id must not contain '.'")
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers and the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


def payload(kind: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
    """The body: ``{type, timestamp, data}`` as the spec recommends, minified JSON (what is signed
    is exactly what is sent, so it is encoded once and stored)."""
    document = {"type": kind, "timestamp": occurred_at.isoformat().replace("+00:00", "Z"), "data": data}
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
