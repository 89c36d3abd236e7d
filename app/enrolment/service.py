"""Agents that enrol themselves: one-time tokens for a server, and spending one.

An administrator makes a token for a server (``create_token``); on the mail server,
``certpost agent enroll`` presents it with the agent's URL and TLS fingerprint (``enrol``):
the token is spent, the server's agent is set exactly as ``PATCH /v1/servers/{id}`` sets it
(which redeploys), and the agent receives the controller's public key. The token is the only
credential of that request, so it is short-lived (``enrolment_token_seconds``, 1 h by
default), single use, and stored as SHA-256 only. The controller cannot check here that the
agent holds the key of the fingerprint it reports (the agent is not serving yet); the token
stands for the administrator's decision, and the first delivery pins that fingerprint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives.serialization import Encoding

from app.accounts.caller import Caller
from app.config import Settings
from app.db import new_id
from app.enrolment import tokens
from app.enrolment.models import EnrolmentToken
from app.enrolment.repository import EnrolmentRepository
from app.events import EventKind, record
from app.kit.time import utc_now
from app.kit.x509 import load_pem_certificates
from app.problems import Conflict, Forbidden, NotFound
from app.servers.models import Server
from app.servers.service import ServerService, normalise_agent_url, normalise_fingerprint


class EnrolmentTokenInvalid(Forbidden):
    """The enrolment token is not one certpost made (unknown, altered or deleted)."""

    code, title = "enrolment_token_invalid", "The enrolment token is not valid"


class EnrolmentTokenExpired(Forbidden):
    """The enrolment token's lifetime is over; an administrator makes a new one."""

    code, title = "enrolment_token_expired", "The enrolment token has expired"


class AgentAlreadyEnrolled(Conflict):
    """The agent (its TLS identity) already serves another server: two servers pointing at one
    agent would overwrite each other's certificates on it. Clear the other server's agent
    (`PATCH /v1/servers/{id}` with `agent_url` null) or enrol with a new identity."""

    code, title = "agent_already_enrolled", "This agent already serves another server"


class EnrolmentTokenUsed(Forbidden):
    """The enrolment token was already used (tokens are single use); an administrator makes a new one."""

    code, title = "enrolment_token_used", "The enrolment token was already used"


def controller_tls_fingerprint(settings: Settings) -> str | None:
    """SHA-256 (hex) of the certificate `certpost serve` serves, when it serves HTTPS itself;
    what ``certpost agent enroll --pin sha256:...`` compares during the handshake."""
    if settings.tls_cert_file is None:
        return None
    leaf = load_pem_certificates(settings.tls_cert_file.read_bytes())[0]
    return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Enrolled:
    server: Server
    token: EnrolmentToken


class EnrolmentService:
    def __init__(self, repo: EnrolmentRepository, servers: ServerService, default_seconds: int):
        self.repo = repo
        self.servers = servers
        self.default_seconds = default_seconds

    async def create_token(self, caller: Caller, server_id: str, *, expires_in: int | None,
                           description: str | None) -> tuple[EnrolmentToken, str]:
        """A new token for the server; the text is returned once and never stored."""
        server = await self.servers.get(server_id)
        secret = tokens.new_secret()
        now = utc_now()
        row = EnrolmentToken(
            id=new_id(), server_id=server.id, secret_hash=tokens.hash_secret(secret), description=description,
            created_by=caller.token_id, created_at=now,
            expires_at=now + timedelta(seconds=expires_in or self.default_seconds),
        )
        await self.repo.add(row)
        record(self.repo.session, EventKind.ENROLMENT_TOKEN_CREATED, caller, account_id=None,
               subjects={"enrolment_token": row.id, "server": server.id},
               data={"description": description, "expires_at": row.expires_at})
        return row, tokens.format_token(row.id, secret)

    async def delete_token(self, caller: Caller, server_id: str, token_id: str) -> None:
        row = await self.repo.get(token_id)
        if row is None or row.server_id != server_id:
            raise NotFound("enrolment token not found")
        await self.repo.delete(row)
        record(self.repo.session, EventKind.ENROLMENT_TOKEN_DELETED, caller, account_id=None,
               subjects={"enrolment_token": row.id, "server": server_id}, data={"used": row.used_at is not None})

    async def enrol(self, token_text: str, *, agent_url: str, agent_tls_fingerprint: str) -> Enrolled:
        """Spend the token and set the server's agent. Nothing changes unless all of it does:
        the URL and fingerprint are judged before the token is spent, and a refusal after it
        rolls the whole transaction back."""
        url = normalise_agent_url(agent_url)
        fingerprint = normalise_fingerprint(agent_tls_fingerprint)
        parsed = tokens.parse_token(token_text)
        row = await self.repo.get(parsed[0]) if parsed else None
        if row is None or not tokens.secret_matches(parsed[1], row.secret_hash):
            raise EnrolmentTokenInvalid("the enrolment token is not valid; ask an administrator for a new one")
        now = utc_now()
        if row.used_at is not None:
            raise EnrolmentTokenUsed(f"the enrolment token was used at {row.used_at:%Y-%m-%d %H:%M:%SZ}")
        if row.expires_at <= now:
            raise EnrolmentTokenExpired(f"the enrolment token expired at {row.expires_at:%Y-%m-%d %H:%M:%SZ}")
        other = await self.repo.server_with_fingerprint(fingerprint, excluding=row.server_id)
        if other is not None:
            raise AgentAlreadyEnrolled(f"this agent's TLS identity is already the agent of server {other.name} "
                                       f"({other.id}); clear that server's agent first")
        if not await self.repo.spend(row.id, now, url):
            raise EnrolmentTokenUsed("the enrolment token was used by another request meanwhile")
        previous = (await self.servers.get(row.server_id)).agent_url
        server = await self.servers.patch(row.server_id, {"agent_url": url, "agent_tls_fingerprint": fingerprint})
        record(self.repo.session, EventKind.AGENT_ENROLLED, Caller.for_enrolment(row.id), account_id=None,
               subjects={"enrolment_token": row.id, "server": server.id},
               data={"agent_url": url, "agent_tls_fingerprint": fingerprint, "previous_agent_url": previous})
        return Enrolled(server, row)
