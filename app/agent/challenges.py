"""HTTP-01 answers (RFC 8555 section 8.3) served by the agent's nginx.

The controller publishes a key authorization with ``PUT /v1/acme-challenges/{token}``; the agent
writes it to ``<nginx directory>/acme-challenge/<token>``, which the plain-HTTP ``server`` block
of the nginx backend serves at ``/.well-known/acme-challenge/<token>`` for any Host. nginx reads
the file per request, so publishing and withdrawing never reload anything.

The token and the key authorization are checked strictly: the token becomes a file name, and the
body is served verbatim to whoever asks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.agent.fsutil import atomic_write, fsync_dir
from app.kit.names import is_canonical

TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
# "<token>.<base64url SHA-256 JWK thumbprint>" (RFC 8555 section 8.1, RFC 7638)
_KEY_AUTHORIZATION = re.compile(r"[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,128}")
DIRECTORY_NAME = "acme-challenge"


class ChallengeIn(BaseModel):
    """The body of ``PUT /v1/acme-challenges/{token}``.

    ``names`` are the identifiers being validated (informative: the answer is served for any
    Host); wildcards cannot be validated with http-01 (RFC 8555 section 7.1.3).
    """

    model_config = ConfigDict(extra="forbid")
    key_authorization: str = Field(max_length=300)
    names: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("key_authorization")
    @classmethod
    def _key_authorization(cls, value: str) -> str:
        if not _KEY_AUTHORIZATION.fullmatch(value):
            raise ValueError("a key authorization is '<token>.<base64url thumbprint>'")
        return value

    @field_validator("names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not is_canonical(name):
                raise ValueError("names must be lower-case host names (IDNA A-labels, no wildcard)")
        return names


def valid_token(token: str) -> bool:
    return bool(TOKEN.fullmatch(token))


class ChallengeStore:
    """The directory nginx serves HTTP-01 answers from (0755; files 0644: they are public)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o755)

    def path(self, token: str) -> Path:
        if not valid_token(token):  # the caller checked; never build a path from anything else
            raise ValueError("invalid token")
        return self.directory / token

    def publish(self, token: str, key_authorization: str) -> None:
        """Write the key authorization (no newline) atomically: nginx never serves half a file."""
        self.ensure()
        atomic_write(self.path(token), key_authorization.encode("ascii"), mode=0o644)

    def withdraw(self, token: str) -> bool:
        """Remove the answer; False when there was none."""
        try:
            self.path(token).unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.directory)
        return True
