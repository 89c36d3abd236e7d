"""`certpost serve` as a subprocess, as an operator starts it: the ``certpost`` console script
that ``pip install -e .`` installs, for tests that kill or outlast it, read its log, or run a
client (schemathesis) against it.

Started with its own data directory and environment, on a free loopback port; stopped (or
SIGKILLed) by its PID. Its stderr goes to a log file, its stdout is kept line by line, and the
first admin token it prints is kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.support.daemons import certpost_command
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]


class ServeProcess:
    def __init__(self, data_dir: Path, *, env: dict[str, str | None] | None = None, log: Path | None = None,
                 args: tuple[str, ...] = (), cwd: Path = REPO):
        """``env`` adds to the test's environment; a ``None`` value removes the variable. The
        database is the data directory's SQLite unless ``env`` names CERTPOST_DATABASE_URL."""
        self.data_dir = data_dir
        self.env = {**os.environ, "CERTPOST_DATA_DIR": str(data_dir)}
        if not env or "CERTPOST_DATABASE_URL" not in env:
            self.env.pop("CERTPOST_DATABASE_URL", None)
        for name, value in (env or {}).items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value
        self.log = log or data_dir.parent / "serve.log"
        self.args = args
        self.cwd = cwd
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.token: str | None = None
        self.stdout: list[str] = []
        self._reader: threading.Thread | None = None
        # CERTPOST_TLS_CERT_FILE set: `certpost serve` answers HTTPS (its certificate is not
        # checked while waiting for it to start; the tests that use it pin or verify it).
        self.tls = "CERTPOST_TLS_CERT_FILE" in self.env

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60, ready: str = "/healthz") -> ServeProcess:
        """Start and wait until ``ready`` (``/healthz``, or ``/readyz`` to wait for the database
        too) answers 200; the first admin token is read from stdout."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [certpost_command(), "serve", "--port", str(self.port), *self.args],
                cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True,
            )
        self._reader = threading.Thread(target=self._read_stdout, args=(self.process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"certpost serve exited {self.process.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}{ready}", timeout=1, verify=not self.tls).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"certpost serve did not answer within {timeout} s; see {self.log}")

    def _read_stdout(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.stdout.append(line)
            if line.strip().startswith("cpt_") and self.token is None:
                self.token = line.strip()

    def wait_token(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while self.token is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.token, "certpost serve printed no admin token"
        return self.token

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown of any kind."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
