"""Enrolment token format: ``cpe_<id>_<secret>``, pure functions.

The same construction as API tokens (app/accounts/tokens.py): the id finds the row, only
SHA-256 of the 256-bit secret is stored and compared in constant time. A distinct prefix, so
an enrolment token pasted where an API token is expected (or the reverse) is refused as what it
is, and secret scanners can tell them apart.
"""

from __future__ import annotations

from app.accounts import tokens as api_tokens
from app.accounts.tokens import hash_secret, new_secret, secret_matches

PREFIX = "cpe_"

__all__ = ["PREFIX", "format_token", "hash_secret", "new_secret", "parse_token", "secret_matches"]


def format_token(token_id: str, secret: str) -> str:
    return api_tokens.format_token(token_id, secret, PREFIX)


def parse_token(token: str) -> tuple[str, str] | None:
    return api_tokens.parse_token(token, PREFIX)
