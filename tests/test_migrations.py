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
