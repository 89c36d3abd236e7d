"""Seeding a benchmark's database through the services (never timed), shared by the benchmarks.

``tenant`` makes the account, an admin token and the registered server every benchmark starts
from; ``store_issued`` stores a certificate issued by the bench CA through the same upload rules
as the API (``material.from_pem`` + ``CertificateService.store``).
"""

from __future__ import annotations

from dataclasses import dataclass

import common  # noqa: F401  (puts the repository on sys.path)

from app.accounts.caller import OPERATOR, Caller
from app.accounts.repository import AccountRepository
from app.accounts.service import AccountService
from app.certificates import material
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.context import AppContext
from app.servers.repository import ServerRepository
from app.servers.service import ServerService

ADMIN = Caller(token_id="bench", role="admin", account_id=None)


@dataclass(frozen=True)
class Tenant:
    account_id: str
    token: str  # an admin token, for the API
    server_id: str
    hostname: str


async def tenant(ctx: AppContext, hostname: str = "mx.bench.test", *, agent_url: str | None = None,
                 agent_tls_fingerprint: str | None = None) -> Tenant:
    """An account, an admin token and one registered ``postfix-dovecot`` server, committed."""
    async with ctx.sessionmaker() as session:
        accounts = AccountService(AccountRepository(session))
        account = await accounts.create_account("bench")
        _row, token = await accounts.create_token("admin", None, caller=OPERATOR)
        certs = CertificateService(CertificateRepository(session), ctx.master_key)
        server = await ServerService(ServerRepository(session), certs).register(
            name="bench", hostname=hostname, software="postfix-dovecot", agent_url=agent_url,
            agent_tls_fingerprint=agent_tls_fingerprint, caller=OPERATOR)
        await session.commit()
        return Tenant(account.id, token, server.id, server.hostname)


async def store_issued(ctx: AppContext, certs: CertificateService, ca, names: list[str], account_id: str,
                       name: str):
    """A new certificate for ``names`` from the bench CA, stored as an upload (flushed, not committed)."""
    issued = ca.issue(names)
    mat = material.from_pem(issued.cert_pem, issued.key_pem, chain_pem=issued.chain_pem, trust=ctx.trust)
    return await certs.store(mat, account_id=account_id, name=name, source="upload", caller=OPERATOR)
