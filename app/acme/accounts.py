"""The ACME account of this certpost installation: one per directory URL, key sealed at rest."""

from __future__ import annotations

import time

from sqlalchemy.exc import IntegrityError

from app.acme.client import make_client, register_or_load_account
from app.acme.models import AcmeAccount
from app.acme.repository import AcmeRepository
from app.context import AppContext
from app.db import new_id
from app.kit.crypto import Sealed

CLIENT_REUSE_SECONDS = 600.0
"""One client per account, shared by the orders running at once and rebuilt after this long
(which re-reads the CA's directory, RFC 8555 §7.1.1)."""
SHARED_CONNECTIONS = 32
"""Kept-alive connections to the CA: one per order the worker runs at once (ORDER_CONCURRENCY)."""


def _ca_bundle(ctx: AppContext) -> str | bool:
    return str(ctx.settings.acme_ca_bundle) if ctx.settings.acme_ca_bundle else True


async def acme_client(ctx: AppContext):
    """A ready ``ClientV2`` for the configured directory, registering the account on first use.

    Only registration is serialised (one account per directory, whichever worker task gets
    there first). With the account stored, orders share one client (thread-safe: certbot's
    ``acme`` keeps a nonce set and a requests session with a connection pool): no directory
    fetch, TLS handshake or fresh nonce per order. Under the old lock, 20 orders posted at once
    waited for each other's client.
    """
    client = await _stored_account_client(ctx)
    if client is not None:
        return client
    settings = ctx.settings
    url = settings.acme_directory_url
    async with ctx.lock("acme-account"):
        client = await _stored_account_client(ctx)  # registered while this task waited
        if client is not None:
            return client
        async with ctx.sessionmaker() as session:
            client, key_pem, account_uri = await ctx.run_blocking(
                register_or_load_account, url, None, settings.acme_email,
                settings.acme_eab_kid, settings.acme_eab_hmac_key, _ca_bundle(ctx),
            )
            row = AcmeAccount(id=new_id(), directory_url=url, email=settings.acme_email, account_uri=account_uri,
                              key_ciphertext=b"", key_wrapped=b"", master_key_id="")
            sealed = ctx.master_key.seal(key_pem if isinstance(key_pem, bytes) else key_pem.encode(), row.id)
            row.key_ciphertext, row.key_wrapped, row.master_key_id = sealed.ciphertext, sealed.wrapped_key, sealed.master_key_id
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                # Another worker registered first; its account is as good (same CA, new key).
                await session.rollback()
            return client


async def _stored_account_client(ctx: AppContext):
    url = ctx.settings.acme_directory_url
    async with ctx.sessionmaker() as session:
        row = await AcmeRepository(session).acme_account(url)
    if row is None:
        return None
    memo_key = ("acme-client", url, row.id, row.account_uri)
    cached = ctx.memo.get(memo_key)
    if cached is not None and time.monotonic() - cached[0] < CLIENT_REUSE_SECONDS:
        return cached[1]
    key = ctx.master_key.open(Sealed(row.key_ciphertext, row.key_wrapped, row.master_key_id), row.id)
    client = await ctx.run_blocking(make_client, url, key, account_uri=row.account_uri, ca_bundle=_ca_bundle(ctx),
                                    connections=SHARED_CONNECTIONS)
    ctx.memo[memo_key] = (time.monotonic(), client)
    return client
