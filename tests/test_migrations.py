"""The Alembic revisions upgrade an empty database, downgrade to nothing, and upgrade again."""

import json
import sqlite3

from app.migrate import downgrade, upgrade
from tests.support.threads import in_thread


def test_upgrade_downgrade_upgrade(tmp_path):
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    in_thread(upgrade, url)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"certificates", "servers", "domains", "bindings", "deployments"} <= tables
    in_thread(downgrade, url, "base")
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    # sqlite_sequence: SQLite's own table behind AUTOINCREMENT (events), which cannot be dropped
    assert tables <= {"alembic_version", "sqlite_sequence"}
    in_thread(upgrade, url)


def test_migrations_match_the_models(tmp_path):
    """What the revisions build is what the models declare (no forgotten revision)."""
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.models import Base

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    in_thread(upgrade, url)

    async def diff():
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        await engine.dispose()
        return found

    assert in_thread(asyncio.run, diff()) == []


def _database_at(tmp_path, revision: str, now: str):
    """A SQLite database upgraded to ``revision`` with account 'a': (path, url, connection)."""
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    in_thread(upgrade, url, revision)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO accounts (id, name, created_at, updated_at) VALUES ('a', 'a', ?, ?)", (now, now))
    return path, url, db


def _certificate(db, cert_id: str, now: str, *, sans: list[str] = (), not_before: str | None = None,
                 not_after: str | None = None, self_signed: int = 0, trusted: int = 0) -> None:
    """A certificate row as the revisions since 0005 have it (no material: these tests read none)."""
    db.execute(
        "INSERT INTO certificates (id, source, subject, issuer, serial, sans, not_before, not_after,"
        " fingerprint_sha256, key_type, key_bits, self_signed, trusted, chain_length, certificate_pem,"
        " chain_pem, key_ciphertext, key_wrapped, master_key_id, revision, created_at, updated_at, renewal_attempts)"
        " VALUES (?, 'upload', 's', 'i', '1', ?, ?, ?, ?, 'ec-p256', 256, ?, ?, 1, '', '', x'00', x'00', 'k', 1, ?, ?, 0)",
        (cert_id, json.dumps(list(sans)), not_before or now, not_after or now, cert_id, self_signed, trusted, now, now))


def _domains(db, bindings: dict, now: str) -> None:
    """Domains of account 'a', each ``name: (server, {service: certificate})``."""
    for domain, (server, services) in bindings.items():
        db.execute("INSERT INTO domains (id, name, server_id, account_id, created_at, updated_at)"
                   " VALUES (?, ?, ?, 'a', ?, ?)", (domain, domain, server, now, now))
        for service, cert in services.items():
            db.execute("INSERT INTO bindings (id, domain_id, service, certificate_id, created_at, updated_at)"
                       " VALUES (?, ?, ?, ?, ?, ?)", (f"{domain}-{service}", domain, service, cert, now, now))


def test_0008_backfills_the_mail_certificate_count(tmp_path):
    """Distinct certificates bound as mail per server, as the COUNT(DISTINCT) it replaces."""
    now = "2026-11-30 00:00:00"
    path, url, db = _database_at(tmp_path, "0005", now)
    for cert in ("c1", "c2", "c3", "default"):
        _certificate(db, cert, now)
    for server in ("s1", "s2", "empty"):
        db.execute("INSERT INTO servers (id, name, hostname, software, mail_certificate_id, default_certificate_id,"
                   " desired_generation, applied_generation, created_at, updated_at)"
                   " VALUES (?, ?, 'h', 'postfix-dovecot', 'default', 'default', 0, 0, ?, ?)", (server, server, now, now))
    bindings = {"d1": ("s1", {"mail": "c1", "webmail": "c3"}), "d2": ("s1", {"mail": "c1"}),
                "d3": ("s1", {"mail": "c2"}), "d4": ("s2", {"webmail": "c1", "mail": "c3"})}
    _domains(db, bindings, now)
    db.commit()
    db.close()
    in_thread(upgrade, url)
    counts = dict(sqlite3.connect(path).execute("SELECT id, mail_certificate_count FROM servers"))
    assert counts == {"s1": 2, "s2": 1, "empty": 0}


def test_0006_keeps_what_the_agents_applied(tmp_path):
    """Upgrading a database written by 0005: each server's applied document becomes its per-name
    rows with the same digest, waiting deployments collapse to the newest one per server, and a
    server without an agent has no due time; the downgrade rebuilds the document."""
    import json

    from app.kit.digest import config_digest_v1 as config_digest  # 0006 froze version 1

    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    in_thread(upgrade, url, "0005")
    document = {"generation": 3, "server_hostname": "mx.test", "server_certificate": "a" * 64,
                "webmail_default": "a" * 64, "mail": {"mail.x.test": "b" * 64},
                "webmail": {"webmail.x.test": "b" * 64, "webmail.y.test": "c" * 64}}
    db = sqlite3.connect(path)
    now = "2026-11-30 00:00:00.000000"
    db.execute("INSERT INTO accounts (id, name, created_at, updated_at) VALUES ('acc', 'a', ?, ?)", (now, now))
    db.execute(
        "INSERT INTO certificates (id, source, subject, issuer, serial, sans, not_before, not_after, "
        "fingerprint_sha256, key_type, key_bits, self_signed, trusted, chain_length, certificate_pem, chain_pem, "
        "key_ciphertext, key_wrapped, master_key_id, revision, renewal_attempts, created_at, updated_at) VALUES "
        "('c', 'self-signed', 's', 'i', '1', '[]', ?, ?, ?, 'ec', 256, 1, 0, 0, '', '', x'00', x'00', 'k', 1, 0, ?, ?)",
        (now, now, "a" * 64, now, now))
    for sid, agent, applied in (("s1", "https://a.test", json.dumps(document)), ("s2", None, None)):
        db.execute("INSERT INTO servers (id, name, hostname, software, agent_url, mail_certificate_id, "
                   "default_certificate_id, desired_generation, applied_generation, applied_config, created_at, "
                   "updated_at) VALUES (?, ?, 'mx.test', 'postfix-dovecot', ?, 'c', 'c', 5, 3, ?, ?, ?)",
                   (sid, sid, agent, applied, now, now))
        for generation, status in ((3, "applied"), (4, "pending"), (5, "retrying")):
            db.execute("INSERT INTO deployments (id, server_id, generation, reason, status, attempts, next_attempt_at, "
                       "created_at, updated_at) VALUES (?, ?, ?, 'r', ?, 0, ?, ?, ?)",
                       (f"{sid}-{generation}", sid, generation, status, now, now, now))
    db.commit()
    db.close()

    in_thread(upgrade, url)
    db = sqlite3.connect(path)
    assert db.execute("SELECT applied_digest FROM servers WHERE id = 's1'").fetchone() == (config_digest(document),)
    assert sorted(db.execute("SELECT hostname, service, fingerprint FROM applied_names")) == [
        ("mail.x.test", "mail", "b" * 64), ("webmail.x.test", "webmail", "b" * 64),
        ("webmail.y.test", "webmail", "c" * 64)]
    waiting = sorted(db.execute("SELECT server_id, generation, next_attempt_at IS NULL FROM deployments "
                                "WHERE status IN ('pending', 'retrying')"))
    assert waiting == [("s1", 5, 0), ("s2", 5, 1)]
    db.close()

    in_thread(downgrade, url, "0005")
    db = sqlite3.connect(path)
    (restored,) = db.execute("SELECT applied_config FROM servers WHERE id = 's1'").fetchone()
    assert config_digest(json.loads(restored)) == config_digest(document)


def test_0007_backfills_renewal_eligible_at(tmp_path):
    """Existing certificates get the stored "due" instant the mapper would have written."""
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    in_thread(upgrade, url, "0005")
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
    in_thread(upgrade, url)
    found = dict(sqlite3.connect(path).execute("SELECT id, renewal_eligible_at FROM certificates"))
    assert found == {"due": past, "backing-off": later, "retry-passed": later, "renewing": None, "uploaded": None}


def test_0020_backfills_each_domains_tls_summary(tmp_path):
    """What each domain presents (its binding's certificate, else the server's webmail default
    or server-wide mail certificate), summarised as ``tls_summary.summarize`` does."""
    from datetime import UTC, datetime

    from app.domains.tls_summary import summarize

    now = "2026-11-30 00:00:00.000000"
    path, url, db = _database_at(tmp_path, "0019", now)
    # id: (names, not_before, not_after, self_signed, trusted)
    certs = {
        "default": (["h.test"], "2026-01-01", "2036-01-01", 1, 0),
        "webmail": (["h.test", "webmail.d3.test"], "2026-02-01", "2027-03-01", 0, 1),
        "c1": (["webmail.d1.test", "mail.d1.test"], "2026-03-01", "2027-01-01", 0, 1),
        "c2": (["*.d2.test"], "2026-12-24", "2027-02-01", 0, 0),
    }
    for cert, (names, start, end, own, trusted) in certs.items():
        _certificate(db, cert, now, sans=names, not_before=f"{start} 00:00:00.000000",
                     not_after=f"{end} 00:00:00.000000", self_signed=own, trusted=trusted)
        db.executemany("INSERT INTO certificate_names (certificate_id, name) VALUES (?, ?)",
                       [(cert, n) for n in names])
    for server, webmail in (("s1", None), ("s2", "webmail")):
        db.execute("INSERT INTO servers (id, name, hostname, software, mail_certificate_id, default_certificate_id,"
                   " webmail_certificate_id, desired_generation, applied_generation, created_at, updated_at)"
                   " VALUES (?, ?, 'h.test', 'postfix-dovecot', 'default', 'default', ?, 0, 0, ?, ?)",
                   (server, server, webmail, now, now))
    bindings = {"d1.test": ("s1", {"mail": "c1", "webmail": "c1"}), "d2.test": ("s1", {"webmail": "c2"}),
                "d3.test": ("s2", {}), "d4.test": ("s2", {"mail": "c1"})}
    _domains(db, bindings, now)
    db.commit()
    db.close()
    in_thread(upgrade, url)

    class Cert:
        def __init__(self, cert):
            names, start, end, own, trusted = certs[cert]
            self.sans, self.self_signed, self.trusted = names, bool(own), bool(trusted)
            self.not_before, self.not_after = (datetime.fromisoformat(t).replace(tzinfo=UTC) for t in (start, end))

    defaults = {"s1": {"webmail": "default", "mail": "default"}, "s2": {"webmail": "webmail", "mail": "default"}}
    expected = {}
    for domain, (server, services) in bindings.items():
        presented = {s: Cert(services.get(s, defaults[server][s])) for s in ("webmail", "mail")}
        soonest, start, flags = summarize(domain, presented)
        expected[domain] = (str(soonest.replace(tzinfo=None)) + ".000000", str(start.replace(tzinfo=None)) + ".000000",
                            flags)
    kept = {r[0]: tuple(r[1:]) for r in sqlite3.connect(path).execute(
        "SELECT name, tls_soonest, tls_latest_start, tls_flags FROM domains")}
    assert kept == expected
    assert {d: f for d, (_s, _t, f) in kept.items()} == {"d1.test": 0, "d2.test": 7, "d3.test": 3, "d4.test": 1}
    # 0022: which certificate each service presents, and whether it is bound
    presented = {r[0]: tuple(r[1:]) for r in sqlite3.connect(path).execute(
        "SELECT name, tls_webmail_certificate_id, tls_mail_certificate_id, tls_webmail_bound, tls_mail_bound"
        " FROM domains")}
    assert presented == {"d1.test": ("c1", "c1", 1, 1), "d2.test": ("c2", "default", 1, 0),
                         "d3.test": ("webmail", "default", 0, 0), "d4.test": ("webmail", "c1", 0, 1)}
