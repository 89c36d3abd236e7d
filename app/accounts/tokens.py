"""API token format and hashing: pure functions.

A token reads ``cpt_<id>_<secret>``. The id finds the row; only SHA-256 of the secret is
stored, and it is compared with ``hmac.compare_digest`` so timing says nothing about it. The
secret has 256 bits of entropy, so a plain hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "cpt_"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def format_token(token_id: str, secret: str, prefix: str = PREFIX) -> str:
    return f"{prefix}{token_id}_{secret}"


def parse_token(token: str, prefix: str = PREFIX) -> tuple[str, str] | None:
    """(id, secret) of ``<prefix><36-character id>_<secret>``; None for anything else. Other
    token kinds (enrolment tokens, app/enrolment/tokens.py) pass their own prefix."""
    if not token.startswith(prefix):
        return None
    token_id, sep, secret = token[len(prefix):].partition("_")
    if not sep or len(token_id) != 36 or not secret:
        return None
    return token_id, secret


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
