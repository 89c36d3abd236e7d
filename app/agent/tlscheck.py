"""Can this bundle be served at all? A TLS server identity check done in memory, per bundle.

A bundle that parses and whose key matches its leaf (``app.agent.bundles.build_bundle``) can
still be refused by OpenSSL once a daemon tries to serve it: at the default security level
(SECLEVEL 2 on Debian 12, openssl-ciphers(1) "SECURITY LEVELS") an RSA key under 2048 bits is
refused when it is loaded ("ee key too small"), and a DSA key or a curve outside the TLS groups
(RFC 8446 section 4.2.7, e.g. secp256k1) loads but leaves no signature algorithm to negotiate
(RFC 8446 section 4.2.3: TLS 1.3 has no DSA), so every handshake fails ("no shared cipher",
"no suitable signature algorithm"). Postfix, Dovecot and nginx use the same OpenSSL, so the
agent asks it directly, before anything is switched: it loads the bundle file as a server
identity (``SSLContext.load_cert_chain``) and completes a handshake with a client that accepts
any certificate, over a pair of ``ssl.MemoryBIO`` (no socket, no port). A failure names the
bundle only, so the pipeline can hold back the names bound to it and apply everything else.

Cost: about 2-6 ms per bundle (one handshake); only bundles not already served are checked.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

# Bounded so that a pathological peer cannot loop: a TLS 1.2 or 1.3 handshake takes 2-3 flights.
_MAX_FLIGHTS = 8


@dataclass(frozen=True)
class Unusable:
    """Why a bundle cannot be served: ``code`` is stable, ``message`` is OpenSSL's own words."""

    code: str  # "key_refused" | "handshake_failed"
    message: str


def _server_context(bundle: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Key first, then the leaf and its issuers in one file: keyfile None reads the key from it.
    context.load_cert_chain(bundle)
    return context


def _client_context() -> ssl.SSLContext:
    """A client that offers what current clients offer (TLS 1.2 and 1.3, OpenSSL's defaults)
    but accepts any certificate: trust is not the question here, usability is."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _handshake(server: ssl.SSLObject, client: ssl.SSLObject, wires: tuple) -> None:
    """Drive both ends until each has finished; raise ssl.SSLError from either."""
    to_server, from_server, to_client, from_client = wires
    done = {"client": False, "server": False}
    for _ in range(_MAX_FLIGHTS):
        for side, end in (("client", client), ("server", server)):
            if done[side]:
                continue
            try:
                end.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            if data := from_client.read():
                to_server.write(data)
            if data := from_server.read():
                to_client.write(data)
        if all(done.values()):
            return
    raise ssl.SSLError("the in-memory handshake did not finish")


def check_identity(bundle: Path, sni: str = "certpost-check.invalid") -> Unusable | None:
    """None when OpenSSL serves ``bundle`` (a key+certificates PEM file) in a full handshake."""
    try:
        server_context = _server_context(bundle)
    except (ssl.SSLError, ValueError) as exc:
        return Unusable("key_refused", f"OpenSSL refuses to load it as a server identity: {exc}")
    from_client, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    to_server, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    client = _client_context().wrap_bio(to_client, from_client, server_hostname=sni)
    try:
        _handshake(server, client, (to_server, from_server, to_client, from_client))
    except ssl.SSLError as exc:
        return Unusable("handshake_failed", f"no TLS handshake is possible with it: {exc}")
    return None
