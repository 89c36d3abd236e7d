"""A private BIND 9 instance on loopback: the real DNS server the ACME tests update over RFC 2136.

Why BIND and not a mock: production dns-01 goes through a real primary that checks TSIG (RFC 8945)
and applies UPDATE messages (RFC 2136); Pebble resolves the `_acme-challenge` TXT records and the A
records for HTTP-01 through the same server (`-dnsserver`). See docs in
/work/shared/guide/real-servers.md ("A real DNS server with RFC 2136 updates").

Every start writes fresh zone files and removes journals, so records from an earlier run never come back.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port

NAMED = shutil.which("named") or "/usr/sbin/named"

DEFAULT_ZONES: tuple[str, ...] = ("a.test", *(f"z{i:02d}.test" for i in range(1, 26)))
"""`a.test` for single tests, `z01.test`..`z25.test` for parallel issuance and measurements."""

READONLY_ZONES: tuple[str, ...] = ("locked.test",)
"""Zones the server is authoritative for but the TSIG key may not update (answers REFUSED)."""

HTTP01_HOSTS: tuple[str, ...] = ("", "webmail", "mail", "www")
"""Names (relative to each zone; "" is the apex) that get an A record 127.0.0.1 for HTTP-01."""

TSIG_KEY_NAME = "certpost-test."
TSIG_ALGORITHM = "hmac-sha256"


@dataclass
class BindServer:
    """What a test needs to talk to the running named."""

    host: str
    port: int
    directory: Path
    zones: tuple[str, ...]
    readonly_zones: tuple[str, ...]
    key_name: str
    key_algorithm: str
    key_secret: str
    pid: int
    log_path: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """`host:port`, the form Pebble's `-dnsserver` flag takes."""
        return f"{self.host}:{self.port}"


def _zone_file(zone: str, extra: Sequence[str] = ()) -> str:
    lines = [
        "$TTL 5",
        f"@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 60 30 600 1 )",
        f"@ IN NS ns1.{zone}.",
        "ns1 IN A 127.0.0.1",
    ]
    for host in HTTP01_HOSTS:
        lines.append(f"{host or '@'} IN A 127.0.0.1")
    lines.extend(extra)
    return "\n".join(lines) + "\n"


def _named_conf(
    directory: Path,
    port: int,
    zones: Sequence[str],
    readonly_zones: Sequence[str],
    key_name: str,
    secret: str,
    policies: Mapping[str, str] | None = None,
) -> str:
    policies = policies or {}
    zone_blocks = "\n".join(
        f'zone "{zone}" {{ type primary; file "{directory / (zone + ".zone")}"; '
        + (policies.get(zone) or f'allow-update {{ key "{key_name}"; }};')
        + " };"
        for zone in zones
    )
    zone_blocks += "\n" + "\n".join(
        f'zone "{zone}" {{ type primary; file "{directory / (zone + ".zone")}"; }};'
        for zone in readonly_zones
    )
    return f"""
key "{key_name}" {{ algorithm {TSIG_ALGORITHM}; secret "{secret}"; }};
options {{
    directory "{directory}";
    pid-file "{directory / "named.pid"}";
    session-keyfile "{directory / "session.key"}";
    managed-keys-directory "{directory}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
{zone_blocks}
"""


def _wait_ready(
    host: str, port: int, proc: subprocess.Popen, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"named exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.2):
                pass
            if "running" in log_path.read_text():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"named did not start in {timeout} s: {log_path.read_text()[-2000:]}")


def start_bind(
    zones: Sequence[str] = DEFAULT_ZONES,
    *,
    readonly_zones: Sequence[str] = READONLY_ZONES,
    directory: Path | None = None,
    timeout: float = 10.0,
    records: Mapping[str, Sequence[str]] | None = None,
    policies: Mapping[str, str] | None = None,
) -> BindServer:
    """Start named in the foreground (`-g`) on a free port, primary for `zones`, TSIG-updatable.

    `records` adds zone-file lines per zone (CNAMEs for delegation tests); `policies` replaces a
    zone's `allow-update` with another statement, e.g. an `update-policy` that lets the key
    write TXT records only (BIND ARM, "Dynamic Update Policies").
    """
    directory = Path(directory or tempfile.mkdtemp(prefix="certpost-bind-"))
    directory.mkdir(parents=True, exist_ok=True)
    for journal in directory.glob("*.jnl"):
        journal.unlink()
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    port = free_port()
    for zone in (*zones, *readonly_zones):
        (directory / f"{zone}.zone").write_text(_zone_file(zone, (records or {}).get(zone, ())))
    conf = directory / "named.conf"
    conf.write_text(_named_conf(directory, port, zones, readonly_zones, TSIG_KEY_NAME, secret, policies))
    os.chmod(conf, 0o600)
    log_path = directory / "named.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [NAMED, "-c", str(conf), "-g"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_ready("127.0.0.1", port, proc, log_path, timeout)
    except BaseException:
        _kill(proc)
        raise
    return BindServer(
        host="127.0.0.1",
        port=port,
        directory=directory,
        zones=tuple(zones),
        readonly_zones=tuple(readonly_zones),
        key_name=TSIG_KEY_NAME,
        key_algorithm=TSIG_ALGORITHM,
        key_secret=secret,
        pid=proc.pid,
        log_path=log_path,
        _proc=proc,
    )


def _kill(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


def stop_bind(server: BindServer, *, remove: bool = True) -> None:
    """Stop the named this module started (by its PID) and remove its directory."""
    if server._proc is not None:
        _kill(server._proc)
    if remove:
        shutil.rmtree(server.directory, ignore_errors=True)


@contextmanager
def running_bind(zones: Sequence[str] = DEFAULT_ZONES) -> Iterator[BindServer]:
    """Context manager around `start_bind`/`stop_bind`."""
    server = start_bind(zones)
    try:
        yield server
    finally:
        stop_bind(server)


def start_resolver(upstream: BindServer, *, timeout: float = 10.0) -> BindServer:
    """A second named that recurses, forwarding every query to `upstream`: what a CA's resolver
    does for Pebble. An authoritative server stops a CNAME chain at its zone's edge (RFC 1034
    §4.3.2: it answers from the zone it holds); a resolver follows it into the next zone, so a
    delegated `_acme-challenge` CNAME into another zone needs one in front of Pebble."""
    directory = Path(tempfile.mkdtemp(prefix="certpost-resolver-"))
    port = free_port()
    conf = directory / "named.conf"
    conf.write_text(f"""
options {{
    directory "{directory}";
    pid-file "{directory / "named.pid"}";
    session-keyfile "{directory / "session.key"}";
    managed-keys-directory "{directory}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ any; }};
    allow-recursion {{ 127.0.0.0/8; }};
    forward only;
    forwarders {{ {upstream.host} port {upstream.port}; }};
    dnssec-validation no;
    max-cache-ttl 1;
    max-ncache-ttl 1;
    notify no;
}};
controls {{ }};
""")
    log_path = directory / "named.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([NAMED, "-c", str(conf), "-g"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ready("127.0.0.1", port, proc, log_path, timeout)
    except BaseException:
        _kill(proc)
        raise
    return BindServer(host="127.0.0.1", port=port, directory=directory, zones=(), readonly_zones=(),
                      key_name="", key_algorithm="", key_secret="", pid=proc.pid, log_path=log_path, _proc=proc)
