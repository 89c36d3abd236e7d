"""What a client sees on a local port: the certificate served for an SNI name.

The protocol code lives in :mod:`app.agent.probe` (the agent verifies its own work with it);
this module is the tests' entry point, with fingerprint helpers.
"""

from __future__ import annotations

import hashlib

from app.agent.probe import PROTOCOLS, ProbeError, served_certificate

__all__ = ["PROTOCOLS", "ProbeError", "served_certificate", "served_fingerprint"]


def served_fingerprint(
    host: str,
    port: int,
    protocol: str,
    sni: str | None,
    *,
    ca_file: str | None = None,
    check_hostname: bool = False,
    timeout: float = 5,
) -> str:
    der = served_certificate(
        host, port, protocol, sni, ca_file=ca_file, check_hostname=check_hostname, timeout=timeout
    )
    return hashlib.sha256(der).hexdigest()
