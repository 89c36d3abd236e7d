"""Example values the OpenAPI document shows (schemas' ``examples``, responses' ``example``).

One coherent story, so that a generated client's documentation reads like a real exchange: the
platform hosts ``example.com`` on the Postfix/Dovecot server ``mx1.example.net``, and the
certificate below (a real ECDSA P-256 certificate with its key, made for this documentation only:
``openssl req -x509 -days 36500``) covers ``webmail.example.com``, ``mail.example.com`` and
``example.com``. The key is public here; never deploy it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import ConfigDict

ACCOUNT_ID = "8c1f2e3d-4b5a-4697-8a1b-2c3d4e5f6a7b"
SERVER_ID = "5b0f3c2e-8a41-4d5e-9f6a-1c2d3e4f5a6b"
SERVER_CERTIFICATE_ID = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d"
CERTIFICATE_ID = "0f6c1a9e-3b2d-4c8e-a1f0-7d6e5c4b3a29"
DOMAIN_ID = "6e5d4c3b-2a19-4f8e-8d7c-6b5a4f3e2d1c"
DEPLOYMENT_ID = "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PROVIDER_ID = "3e2d1c0b-9a8f-4e7d-b6c5-a4b3c2d1e0f9"
ORDER_ID = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
TOKEN_ID = "1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a"

CREATED = "2026-11-30T09:15:00Z"
UPDATED = "2026-11-30T09:20:00Z"

DOMAIN = "example.com"
SERVER_HOSTNAME = "mx1.example.net"

CERTIFICATE_PEM = """-----BEGIN CERTIFICATE-----
MIIB0zCCAXqgAwIBAgIUL8EbaF2h4x3QSNbxtaKHR4QeC2UwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTd2VibWFpbC5leGFtcGxlLmNvbTAgFw0yNjExMzAyMzU4Mjla
GA8yMTI2MTEwNjIzNTgyOVowHjEcMBoGA1UEAwwTd2VibWFpbC5leGFtcGxlLmNv
bTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKgvEX21+QCpHf5u7B/a2MHf/m54
fHHR9Dh/LYRcfh6nSgb3zLwD5P6OW+0/nlDLzIDc+fQXx1jp2LGYXjfLPr6jgZMw
gZAwHQYDVR0OBBYEFHOEnCehhQ0vbUJL9MbNFjH3MrMyMB8GA1UdIwQYMBaAFHOE
nCehhQ0vbUJL9MbNFjH3MrMyMA8GA1UdEwEB/wQFMAMBAf8wPQYDVR0RBDYwNIIT
d2VibWFpbC5leGFtcGxlLmNvbYIQbWFpbC5leGFtcGxlLmNvbYILZXhhbXBsZS5j
b20wCgYIKoZIzj0EAwIDRwAwRAIgJr9vVxSFYP1NU6lU6uHRv5gF4rSQJrpxke7q
RDfGI3gCIAH994gwmIm1l4FTHy5tImTSbWoDJFlliD/eBXgNWvbK
-----END CERTIFICATE-----
"""
PRIVATE_KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJXylInX+/5cYBDwB
BSkgx0PKvRLiqqwK5YAM98JaPqihRANCAASoLxF9tfkAqR3+buwf2tjB3/5ueHxx
0fQ4fy2EXH4ep0oG98y8A+T+jlvtP55Qy8yA3Pn0F8dY6dixmF43yz6+
-----END PRIVATE KEY-----
"""
FINGERPRINT = "36701ac5c78edf69f67f9ed392eeb73e629618082ce5204b70e91fb798649ba8"
SERIAL = "2fc11b685da1e31dd048d6f1b5a28747841e0b65"
SUBJECT = "CN=webmail.example.com"
SANS = ["webmail.example.com", "mail.example.com", "example.com"]
NOT_BEFORE = "2026-11-30T23:58:29Z"
NOT_AFTER = "2126-11-06T23:58:29Z"
LE_ISSUER = "CN=R11,O=Let's Encrypt,C=US"

REQUEST_ID = "4c3b2a19-0f8e-4d7c-9b6a-5f4e3d2c1b0a"
ENROLMENT_TOKEN_ID = "2f1e0d9c-8b7a-4695-a4b3-c2d1e0f9a8b7"
# A real PKCS#10 request for example.com and *.example.com, signed by PRIVATE_KEY_PEM.
CSR_PEM = """-----BEGIN CERTIFICATE REQUEST-----
MIIBCDCBsAIBADAWMRQwEgYDVQQDDAtleGFtcGxlLmNvbTBZMBMGByqGSM49AgEG
CCqGSM49AwEHA0IABKgvEX21+QCpHf5u7B/a2MHf/m54fHHR9Dh/LYRcfh6nSgb3
zLwD5P6OW+0/nlDLzIDc+fQXx1jp2LGYXjfLPr6gODA2BgkqhkiG9w0BCQ4xKTAn
MCUGA1UdEQQeMByCC2V4YW1wbGUuY29tgg0qLmV4YW1wbGUuY29tMAoGCCqGSM49
BAMCA0cAMEQCIDVm5zjyIsqtLJw+uiAaBGYJy+W+bb1W0WbcY2ea+ElYAiByx5Y+
rchfD4w+TZUHgT/FtxLrza4YYeSjqMb8HmVXCw==
-----END CERTIFICATE REQUEST-----
"""
CSR_PUBLIC_KEY_SHA256 = "ebc7585dc395b55670ca8941c4ba2b5d4dbf7eff33f769c26bacdcebfd822243"
SERVER_FINGERPRINT = "a3f1c2d4e5b6a7980112233445566778899aabbccddeeff00112233445566778"


def cursor(*key: Any) -> str:
    """A ``next_cursor`` as app.paging writes one: base64url of the list's name and its sort key."""
    raw = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


CURSOR = cursor("certificates", "2026-11-30T09:15:00+00:00", CERTIFICATE_ID)


def page(item: dict[str, Any], next_cursor: str | None) -> ConfigDict:
    """The ``model_config`` of a list's page model: one item, the next page's cursor, no ``total``."""
    return ConfigDict(json_schema_extra={"examples": [{"items": [item], "next_cursor": next_cursor, "total": None}]})
