"""Self-signed certificates the agent makes for itself.

* Its own HTTPS identity (``state_dir/tls/agent.{key,crt}``): the controller pins its SHA-256
  fingerprint, printed at start, instead of trusting a CA (trust on first registration).
* The bootstrap bundle: a self-signed certificate for the server's host name, so the daemons
  have something to serve before the controller's first push.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.kit.x509 import certificate_pem, fingerprint_sha256, load_pem_certificates, private_key_pem


def self_signed(
    hostname: str, *, days: int = 825, extra_names: tuple[str, ...] = ()
) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM): ECDSA P-256, SAN = hostname (+ extra names or IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(hostname)]
    for name in extra_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return private_key_pem(key), certificate_pem(cert)


def ensure_agent_tls(state_dir: Path, hostname: str) -> tuple[Path, Path, str]:
    """(key path, certificate path, SHA-256 fingerprint) of the agent's HTTPS identity."""
    tls = state_dir / "tls"
    key_path, cert_path = tls / "agent.key", tls / "agent.crt"
    if not (key_path.exists() and cert_path.exists()):
        tls.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_pem, cert_pem = self_signed(hostname, extra_names=("localhost", "127.0.0.1"))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key_pem)
        cert_path.write_bytes(cert_pem)
    cert = load_pem_certificates(cert_path.read_bytes())[0]
    return key_path, cert_path, fingerprint_sha256(cert)
