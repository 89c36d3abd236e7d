"""The Alembic revisions upgrade an empty database, downgrade to nothing, and upgrade again."""

import sqlite3

from app.migrate import downgrade, upgrade
from tests.conftest import _in_thread


def test_upgrade_downgrade_upgrade(tmp_path):
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    _in_thread(upgrade, url)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"certificates", "servers", "domains", "bindings", "deployments"} <= tables
    _in_thread(downgrade, url, "base")
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables <= {"alembic_version"}
    _in_thread(upgrade, url)


def test_migrations_match_the_models(tmp_path):
    """What the revisions build is what the models declare (no forgotten revision)."""
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.models import Base

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    _in_thread(upgrade, url)

    async def diff():
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        await engine.dispose()
        return found

    assert _in_thread(asyncio.run, diff()) == []


def test_0006_backfills_the_mail_certificate_count(tmp_path):
    """Distinct certificates bound as mail per server, as the COUNT(DISTINCT) it replaces."""
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    _in_thread(upgrade, url, "0005")
    db = sqlite3.connect(path)
    now = "2026-11-30 00:00:00"
    db.execute("INSERT INTO accounts (id, name, created_at, updated_at) VALUES ('a', 'a', ?, ?)", (now, now))
    for cert in ("c1", "c2", "c3", "default"):
        db.execute(
            "INSERT INTO certificates (id, source, subject, issuer, serial, sans, not_before, not_after,"
            " fingerprint_sha256, key_type, key_bits, self_signed, trusted, chain_length, certificate_pem,"
            " chain_pem, key_ciphertext, key_wrapped, master_key_id, revision, created_at, updated_at, renewal_attempts)"
            " VALUES (?, 'upload', 's', 'i', '1', '[]', ?, ?, ?, 'ec-p256', 256, 0, 0, 1, '', '', x'00', x'00', 'k', 1, ?, ?, 0)",
            (cert, now, now, cert, now, now))
    for server in ("s1", "s2", "empty"):
        db.execute("INSERT INTO servers (id, name, hostname, software, mail_certificate_id, default_certificate_id,"
                   " desired_generation, applied_generation, created_at, updated_at)"
                   " VALUES (?, ?, 'h', 'postfix-dovecot', 'default', 'default', 0, 0, ?, ?)", (server, server, now, now))
    bindings = {"d1": ("s1", {"mail": "c1", "webmail": "c3"}), "d2": ("s1", {"mail": "c1"}),
                "d3": ("s1", {"mail": "c2"}), "d4": ("s2", {"webmail": "c1", "mail": "c3"})}
    for domain, (server, services) in bindings.items():
        db.execute("INSERT INTO domains (id, name, server_id, account_id, created_at, updated_at)"
                   " VALUES (?, ?, ?, 'a', ?, ?)", (domain, domain, server, now, now))
        for service, cert in services.items():
            db.execute("INSERT INTO bindings (id, domain_id, service, certificate_id, created_at, updated_at)"
                       " VALUES (?, ?, ?, ?, ?, ?)", (f"{domain}-{service}", domain, service, cert, now, now))
    db.commit()
    db.close()
    _in_thread(upgrade, url)
    counts = dict(sqlite3.connect(path).execute("SELECT id, mail_certificate_count FROM servers"))
    assert counts == {"s1": 2, "s2": 1, "empty": 0}
