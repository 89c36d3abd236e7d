"""Migration 0009 on the test backend (SQLite or PostgreSQL): an owner's copies of one fingerprint
become one row, every binding and server assignment follows it, and the unique index then holds."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.migrate import downgrade, upgrade
from tests.support.threads import in_thread

CERT_COLUMNS = (
    "id, account_id, source, subject, issuer, serial, sans, not_before, not_after, fingerprint_sha256, key_type,"
    " key_bits, self_signed, trusted, chain_length, certificate_pem, chain_pem, key_ciphertext, key_wrapped,"
    " master_key_id, revision, created_at, updated_at, renewal_attempts"
)
CERTS = [  # id, account, fingerprint, trusted, chain_length, created_at (days into 2026)
    ("old", "a", "f1", False, 1, 1), ("good", "a", "f1", True, 2, 30),
    ("other-owner", "b", "f1", False, 1, 1),
    ("p-old", None, "f2", False, 1, 1), ("p-new", None, "f2", False, 1, 60),
    ("single", "a", "f3", False, 1, 1),
]


async def _seed(url: str) -> None:
    from datetime import UTC, datetime, timedelta

    day = datetime(2026, 1, 1, tzinfo=UTC)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for account in ("a", "b"):
            await conn.execute(text("INSERT INTO accounts (id, name, created_at, updated_at) VALUES (:a, :a, :t, :t)"),
                               {"a": account, "t": day})
        for cert, account, fp, trusted, chain, created in CERTS:
            when = day + timedelta(days=created)
            await conn.execute(text(
                f"INSERT INTO certificates ({CERT_COLUMNS}) VALUES (:id, :account, 'upload', 's', 'i', '1', '[]',"
                " :t, :t, :fp, 'ec-p256', 256, false, :trusted, :chain, '', '', :blob, :blob, 'k', 1, :t, :t, 0)"),
                {"id": cert, "account": account, "t": when, "fp": fp, "trusted": trusted, "chain": chain,
                 "blob": b"\x00"})
            await conn.execute(text("INSERT INTO certificate_names (certificate_id, name) VALUES (:c, 'mail.a.test')"),
                               {"c": cert})
        await conn.execute(text(
            "INSERT INTO servers (id, name, hostname, software, mail_certificate_id, default_certificate_id,"
            " desired_generation, applied_generation, created_at, updated_at, mail_certificate_count)"
            " VALUES ('s1', 's1', 'h', 'postfix-dovecot', 'p-new', 'p-new', 0, 0, :t, :t, 2)"), {"t": day})
        bindings = {"d1": {"mail": "old", "webmail": "good"}, "d2": {"mail": "good", "webmail": "single"}}
        for domain, services in bindings.items():
            await conn.execute(text("INSERT INTO domains (id, name, server_id, account_id, created_at, updated_at)"
                                    " VALUES (:d, :d, 's1', 'a', :t, :t)"), {"d": domain, "t": day})
            for service, cert in services.items():
                await conn.execute(text(
                    "INSERT INTO bindings (id, domain_id, service, certificate_id, created_at, updated_at)"
                    " VALUES (:id, :d, :s, :c, :t, :t)"),
                    {"id": f"{domain}-{service}", "d": domain, "s": service, "c": cert, "t": day})
    await engine.dispose()


async def _check(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        ids = set((await conn.execute(text("SELECT id FROM certificates"))).scalars())
        assert ids == {"good", "other-owner", "p-old", "single"}
        assert dict((await conn.execute(text("SELECT id, certificate_id FROM bindings"))).all()) == {
            "d1-mail": "good", "d1-webmail": "good", "d2-mail": "good", "d2-webmail": "single"}
        server = (await conn.execute(text(
            "SELECT mail_certificate_id, default_certificate_id, mail_certificate_count FROM servers"))).one()
        assert tuple(server) == ("p-old", "p-old", 1)
        names = set((await conn.execute(text("SELECT certificate_id FROM certificate_names"))).scalars())
        assert names == ids
    with pytest.raises(IntegrityError):  # the index holds for platform rows (no account) too
        async with engine.begin() as conn:
            await conn.execute(text(
                f"INSERT INTO certificates ({CERT_COLUMNS}) SELECT 'copy', {CERT_COLUMNS.split(', ', 1)[1]}"
                " FROM certificates WHERE id = 'p-old'"))
    await engine.dispose()


def test_0009_merges_duplicates_keeping_bindings(empty_database):
    in_thread(upgrade, empty_database, "0008")
    in_thread(asyncio.run, _seed(empty_database))
    in_thread(upgrade, empty_database)
    in_thread(asyncio.run, _check(empty_database))
    in_thread(downgrade, empty_database, "0008")
    in_thread(upgrade, empty_database)
