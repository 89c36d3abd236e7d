"""A Standard Webhooks verifier written from the specification, not from certpost's code.

spec/standard-webhooks.md (version 1.0.0), "Signature scheme", "Webhook headers" and "Verifying
signatures": the key is the base64-decoded part of the secret after ``whsec_``; the signed
content is ``{webhook-id}.{webhook-timestamp}.{body}``; ``webhook-signature`` is a space-delimited
list of ``<version>,<base64 signature>`` of which a ``v1`` one must match (HMAC-SHA256), compared
in constant time; the timestamp must be within a tolerance of now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


class Invalid(Exception):
    pass


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300) -> None:
    msg_id = headers["webhook-id"]
    stamp = headers["webhook-timestamp"]
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > tolerance:
        raise Invalid("timestamp outside the tolerance")
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_"):])
    expected = hmac.new(key, msg_id.encode() + b"." + stamp.encode() + b"." + body, hashlib.sha256).digest()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected):
            return
    raise Invalid("no v1 signature matches")
