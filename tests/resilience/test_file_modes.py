"""The files that hold secrets are the owner's alone, even in a data directory that already exists.

Through the `certpost` command as typed: `migrate` and `serve` in a subprocess. The umask is
set wide open (0o000) for the child so that nothing but the code itself can make a file 0600.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.support.serve import REPO, ServeProcess


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def _open_umask():
    os.umask(0)


def _certpost(*args, data_dir):
    env = {**os.environ, "CERTPOST_DATA_DIR": str(data_dir)}
    env.pop("CERTPOST_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=True, preexec_fn=_open_umask)


def test_migrate_creates_the_database_0600_in_an_existing_directory(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    _certpost("migrate", data_dir=data)
    assert _mode(data / "certpost.db") == 0o600
    for leftover in ("certpost.db-wal", "certpost.db-shm"):
        if (data / leftover).exists():
            assert _mode(data / leftover) == 0o600


def test_serve_narrows_an_existing_database_and_writes_keys_0600(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    _certpost("migrate", data_dir=data)
    for name in ("certpost.db", "certpost.db-wal", "certpost.db-shm"):
        if (data / name).exists():
            os.chmod(data / name, 0o644)  # as an older certpost (or a copy) left it
    old = os.umask(0)
    try:
        serve = ServeProcess(data).start()
    finally:
        os.umask(old)
    try:
        token = serve.wait_token()
        # A write, so that SQLite's -wal and -shm exist while the service runs.
        answer = httpx.post(f"{serve.url}/v1/accounts", json={"name": "modes"},
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 201, answer.text
        assert (data / "certpost.db-wal").exists() and (data / "certpost.db-shm").exists()
        for name in ("certpost.db", "certpost.db-wal", "certpost.db-shm", "master.key", "controller.key"):
            assert _mode(data / name) == 0o600, name
    finally:
        serve.stop()
