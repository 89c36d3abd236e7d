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


def test_0006_backfills_renewal_eligible_at(tmp_path):
    """Existing certificates get the stored "due" instant the mapper would have written."""
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    _in_thread(upgrade, url, "0005")
    past, later, now = "2026-11-01 00:00:00.000000", "2026-12-01 00:00:00.000000", "2026-11-30 00:00:00.000000"
    rows = [  # id, source, renewal_at, renewal_status, next_renewal_attempt_at
        ("due", "acme", past, "scheduled", None),
        ("backing-off", "acme", past, "failed", later),
        ("retry-passed", "acme", later, "failed", past),
        ("renewing", "acme", past, "renewing", None),
        ("uploaded", "upload", None, None, None),
    ]
    db = sqlite3.connect(path)
    for cid, source, renewal_at, status, next_at in rows:
        db.execute(
            "INSERT INTO certificates (id, created_at, updated_at, source, subject, issuer, serial, sans, not_before,"
            " not_after, fingerprint_sha256, key_type, key_bits, self_signed, trusted, chain_length, certificate_pem,"
            " chain_pem, key_ciphertext, key_wrapped, master_key_id, revision, renewal_at, renewal_status,"
            " renewal_attempts, next_renewal_attempt_at) VALUES (?, ?, ?, ?, 'CN=x', 'CN=ca', '1', '[]', ?, ?, ?, 'ec',"
            " 256, 0, 1, 1, '-', '', x'00', x'00', 'k', 1, ?, ?, 0, ?)",
            (cid, now, now, source, now, later, cid, renewal_at, status, next_at))
    db.commit()
    db.close()
    _in_thread(upgrade, url)
    found = dict(sqlite3.connect(path).execute("SELECT id, renewal_eligible_at FROM certificates"))
    assert found == {"due": past, "backing-off": later, "retry-passed": later, "renewing": None, "uploaded": None}
