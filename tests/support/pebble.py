"""A private Pebble (test ACME CA, RFC 8555) on loopback, resolving names through the test BIND.

The Debian package ships no TLS certificate for Pebble's own HTTPS, so every start makes a small CA
and a certificate for 127.0.0.1/localhost; the ACME client trusts that CA through `ca_bundle`.
Pebble's *issuing* root is different and changes at every start: `issuing_roots_pem()` fetches it.

Pebble 2.4 deadlocked once under many concurrent orders (see real-servers.md): `ensure_alive()`
restarts it, on the same ports, when its directory stops answering.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"

EAB_KID = "certpost-kid-1"
EAB_HMAC_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
"""A test-only External Account Binding key (RFC 8555 §7.3.4); base64url, as CAs hand them out."""


def _write_https_material(directory: Path) -> Path:
    """A throwaway CA plus a 127.0.0.1/localhost leaf for Pebble's HTTPS; returns the CA file path."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certpost test pebble https CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path = directory / "https-ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    (directory / "https-cert.pem").write_bytes(leaf.public_bytes(pem))
    key_path = directory / "https-key.pem"
    key_path.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(key_path, 0o600)
    return ca_path


@dataclass
class PebbleServer:
    """A running Pebble and everything a test needs to use it."""

    directory: Path
    listen_port: int
    management_port: int
    http_port: int
    tls_port: int
    dns_server: str
    ca_bundle: str
    pid: int = 0
    restarts: int = 0
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.listen_port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.management_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "pebble.log"

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle)

    def _get(self, url: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(url, context=self._ssl_context(), timeout=timeout) as resp:
            return resp.read()

    def issuing_roots_pem(self) -> str:
        """PEM of Pebble's current issuing root (`/roots/0`); it changes at every (re)start."""
        return self._get(f"{self.management_url}/roots/0").decode()

    def intermediates_pem(self) -> str:
        """PEM of Pebble's current intermediate (`/intermediates/0`)."""
        return self._get(f"{self.management_url}/intermediates/0").decode()

    def is_alive(self, timeout: float = 3.0) -> bool:
        try:
            json.loads(self._get(self.directory_url, timeout=timeout))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False

    def ensure_alive(self, timeout: float = 3.0) -> bool:
        """Restart Pebble (same ports) when its directory does not answer; True if it restarted.

        A hung Pebble answers no request at all, so a directory GET within `timeout` is the test.
        The issuing root changes with the restart: fetch it again afterwards.
        """
        if self._proc is not None and self._proc.poll() is None and self.is_alive(timeout):
            return False
        stop_pebble(self, remove=False, grace=1.0)
        _launch(self)
        self.restarts += 1
        return True


def _config(server: PebbleServer) -> dict:
    d = server.directory
    return {
        "pebble": {
            "listenAddress": f"127.0.0.1:{server.listen_port}",
            "managementListenAddress": f"127.0.0.1:{server.management_port}",
            "certificate": str(d / "https-cert.pem"),
            "privateKey": str(d / "https-key.pem"),
            "httpPort": server.http_port,
            "tlsPort": server.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "externalAccountMACKeys": {EAB_KID: EAB_HMAC_KEY},
        }
    }


def _launch(server: PebbleServer, timeout: float = 10.0) -> None:
    cfg = server.directory / "pebble-config.json"
    cfg.write_text(json.dumps(_config(server), indent=2))
    env = dict(os.environ)
    env.update(PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
    with open(server.log_path, "ab") as log:
        proc = subprocess.Popen(
            [PEBBLE, "-config", str(cfg), "-dnsserver", server.dns_server],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=server.directory,
            start_new_session=True,
        )
    server._proc, server.pid = proc, proc.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"pebble exited {proc.returncode}: {server.log_path.read_text()[-2000:]}"
            )
        if (
            _port_open(server.listen_port)
            and _port_open(server.management_port)
            and server.is_alive(1.0)
        ):
            return
        time.sleep(0.05)
    stop_pebble(server, remove=False)
    raise RuntimeError(
        f"pebble did not start in {timeout} s: {server.log_path.read_text()[-2000:]}"
    )


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_pebble(dns_server: str, *, http_port: int | None = None) -> PebbleServer:
    """Start Pebble on free loopback ports, resolving through `dns_server` (`host:port`)."""
    directory = Path(tempfile.mkdtemp(prefix="certpost-pebble-"))
    ca_bundle = _write_https_material(directory)
    server = PebbleServer(
        directory=directory,
        listen_port=free_port(),
        management_port=free_port(),
        http_port=http_port or free_port(),
        tls_port=free_port(),
        dns_server=dns_server,
        ca_bundle=str(ca_bundle),
    )
    try:
        _launch(server)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return server


def stop_pebble(server: PebbleServer, *, remove: bool = True, grace: float = 5.0) -> None:
    """Stop the Pebble this module started, by its PID (SIGKILL if it ignores SIGTERM)."""
    proc = server._proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    server._proc = None
    if remove:
        shutil.rmtree(server.directory, ignore_errors=True)


@contextmanager
def running_pebble(dns_server: str) -> Iterator[PebbleServer]:
    server = start_pebble(dns_server)
    try:
        yield server
    finally:
        stop_pebble(server)
