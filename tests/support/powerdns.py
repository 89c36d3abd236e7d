"""A private PowerDNS authoritative server (gsqlite3 backend) with its HTTP API, on loopback.

Why: the `lexicon` DNS provider kind drives DNS hosting APIs through dns-lexicon; PowerDNS is the
one such API that runs here for real. Pebble resolves the `_acme-challenge` TXT records through
the same server (`-dnsserver`), so a test exercises the API write, the propagation wait and the
CA's lookup end to end. Started and stopped by PID; zones are created through the API (zones
made with `pdnsutil` while pdns runs stay REFUSED until a rediscover).
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port

PDNS = shutil.which("pdns_server") or "/usr/sbin/pdns_server"
SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


@dataclass
class PowerDns:
    host: str
    dns_port: int
    api_port: int
    api_key: str
    directory: Path
    pid: int
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """`host:port` of the DNS listener (Pebble's `-dnsserver`)."""
        return f"{self.host}:{self.dns_port}"

    @property
    def api_url(self) -> str:
        """The base URL lexicon's `pdns_server` option takes (`/api/v1` is appended by lexicon)."""
        return f"http://{self.host}:{self.api_port}"

    def _api(self, method: str, path: str, json=None) -> httpx.Response:
        r = httpx.request(method, f"{self.api_url}/api/v1/servers/localhost{path}", json=json,
                          headers={"X-API-Key": self.api_key}, timeout=10)
        r.raise_for_status()
        return r

    def create_zone(self, zone: str, records: Sequence[tuple[str, str, str]] = ()) -> None:
        """Create `zone` (SOA, NS, ns1 A) plus `records` as (name relative to the zone, type, content)."""
        apex = zone.rstrip(".") + "."
        rrsets = [
            {"name": apex, "type": "SOA", "ttl": 5, "records": [
                {"content": f"ns1.{apex} hostmaster.{apex} 1 60 30 600 1", "disabled": False}]},
            {"name": f"ns1.{apex}", "type": "A", "ttl": 5, "records": [{"content": "127.0.0.1", "disabled": False}]},
        ]
        for name, rtype, content in records:
            owner = apex if name in ("", "@") else f"{name}.{apex}"
            rrsets.append({"name": owner, "type": rtype, "ttl": 5, "records": [{"content": content, "disabled": False}]})
        self._api("POST", "/zones", {"name": apex, "kind": "Native", "nameservers": [f"ns1.{apex}"],
                                     "rrsets": rrsets})

    def txt_records(self, zone: str) -> list[dict]:
        """Every TXT RRset PowerDNS holds in `zone`, read through its API (not DNS)."""
        body = self._api("GET", f"/zones/{zone.rstrip('.')}.").json()
        return [r for r in body["rrsets"] if r["type"] == "TXT"]


def start_powerdns(timeout: float = 15.0) -> PowerDns:
    directory = Path(tempfile.mkdtemp(prefix="certpost-pdns-"))
    db = directory / "pdns.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA.read_text())
    dns_port, api_port, key = free_port(), free_port(), secrets.token_urlsafe(24)
    (directory / "pdns.conf").write_text("\n".join([
        "launch=gsqlite3", f"gsqlite3-database={db}", "local-address=127.0.0.1", f"local-port={dns_port}",
        f"socket-dir={directory}", "daemon=no", "guardian=no", "disable-syslog=yes", "security-poll-suffix=",
        "api=yes", f"api-key={key}", "webserver=yes", "webserver-address=127.0.0.1",
        f"webserver-port={api_port}", "webserver-allow-from=127.0.0.1", "loglevel=4", "",
    ]))
    with open(directory / "pdns.log", "wb") as log:
        proc = subprocess.Popen([PDNS, f"--config-dir={directory}"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = PowerDns("127.0.0.1", dns_port, api_port, key, directory, proc.pid, proc)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"pdns_server exited: {(directory / 'pdns.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", api_port), timeout=0.2):
                pass
            server._api("GET", "/zones")
            return server
        except (OSError, httpx.HTTPError):
            if time.monotonic() > deadline:
                stop_powerdns(server)
                raise RuntimeError("pdns_server did not start") from None
            time.sleep(0.1)


def stop_powerdns(server: PowerDns, *, remove: bool = True) -> None:
    """Stop the pdns_server this module started, by its PID."""
    proc = server._proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if remove:
        shutil.rmtree(server.directory, ignore_errors=True)
