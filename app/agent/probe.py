"""Ask a local server which certificate it presents, speaking just enough of its protocol.

Mail protocols upgrade a plaintext session: SMTP ``STARTTLS`` (RFC 3207), IMAP ``STARTTLS``
(RFC 9051 section 6.2.1) and POP3 ``STLS`` (RFC 2595 section 4). The implicit-TLS ports
(SMTPS per RFC 8314, IMAPS, POP3S) and HTTPS start with the TLS handshake. The SNI name is
sent in the ClientHello (RFC 6066 section 3); ``sni=None`` sends none, which is what a client
connecting by IP address does and where a server presents its default certificate.

The agent calls this with no CA (it compares fingerprints, not trust); the tests call it with
the test CA and ``check_hostname=True`` to see exactly what a mail client would accept.
"""

from __future__ import annotations

import hashlib
import socket
import ssl

PROTOCOLS = ("smtp-starttls", "smtps", "imap-starttls", "imaps", "pop3-starttls", "pop3s", "https")


class ProbeError(Exception):
    """The server could not be reached, refused STARTTLS, or the handshake failed."""


def _read_line(sock: socket.socket) -> bytes:
    """One CRLF-terminated line, read a byte at a time so nothing after it is consumed.

    Reading past the STARTTLS reply would swallow the first bytes of the TLS handshake.
    """
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ProbeError("the server closed the connection")
        data += chunk
        if len(data) > 8192:
            raise ProbeError("the server sent an over-long line")
    return bytes(data)


def _smtp_reply(sock: socket.socket) -> tuple[int, bytes]:
    """An SMTP reply, possibly multi-line ("250-..." lines end with "250 ...")."""
    while True:
        line = _read_line(sock)
        if len(line) < 4 or not line[:3].isdigit():
            raise ProbeError(f"unexpected SMTP reply {line[:80]!r}")
        if line[3:4] != b"-":
            return int(line[:3]), line


def _starttls_smtp(sock: socket.socket) -> None:
    code, line = _smtp_reply(sock)
    if code != 220:
        raise ProbeError(f"SMTP greeting: {line.strip()[:120]!r}")
    sock.sendall(b"EHLO certpost-probe.invalid\r\n")
    code, line = _smtp_reply(sock)
    if code != 250:
        raise ProbeError(f"SMTP EHLO: {line.strip()[:120]!r}")
    sock.sendall(b"STARTTLS\r\n")
    code, line = _smtp_reply(sock)
    if code != 220:
        raise ProbeError(f"SMTP STARTTLS refused: {line.strip()[:120]!r}")


def _starttls_imap(sock: socket.socket) -> None:
    greeting = _read_line(sock)
    if not greeting.startswith(b"* OK"):
        raise ProbeError(f"IMAP greeting: {greeting.strip()[:120]!r}")
    sock.sendall(b"a STARTTLS\r\n")
    while True:
        line = _read_line(sock)
        if line.startswith(b"a "):
            if not line.startswith(b"a OK"):
                raise ProbeError(f"IMAP STARTTLS refused: {line.strip()[:120]!r}")
            return


def _starttls_pop3(sock: socket.socket) -> None:
    greeting = _read_line(sock)
    if not greeting.startswith(b"+OK"):
        raise ProbeError(f"POP3 greeting: {greeting.strip()[:120]!r}")
    sock.sendall(b"STLS\r\n")
    line = _read_line(sock)
    if not line.startswith(b"+OK"):
        raise ProbeError(f"POP3 STLS refused: {line.strip()[:120]!r}")


_STARTTLS = {
    "smtp-starttls": _starttls_smtp,
    "imap-starttls": _starttls_imap,
    "pop3-starttls": _starttls_pop3,
}


def _context(ca_file: str | None, check_hostname: bool) -> ssl.SSLContext:
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        context.check_hostname = check_hostname
        return context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def served_certificate(
    host: str,
    port: int,
    protocol: str,
    sni: str | None,
    *,
    ca_file: str | None = None,
    check_hostname: bool = False,
    timeout: float = 5,
) -> bytes:
    """The DER certificate the server presents on ``host:port`` for ``sni``.

    Raises :class:`ProbeError` (connection, protocol or TLS failure, including a failed
    verification when ``ca_file`` is given).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    context = _context(ca_file, check_hostname)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            upgrade = _STARTTLS.get(protocol)
            if upgrade:
                upgrade(raw)
            with context.wrap_socket(raw, server_hostname=sni) as tls:
                der = tls.getpeercert(binary_form=True)
    except ProbeError:
        raise
    except ssl.SSLError as exc:
        raise ProbeError(
            f"TLS handshake with {host}:{port} ({protocol}, SNI {sni}) failed: {exc}"
        ) from None
    except OSError as exc:
        raise ProbeError(f"{host}:{port} ({protocol}): {exc}") from None
    if not der:
        raise ProbeError(f"{host}:{port} presented no certificate")
    return der


def served_fingerprint(
    host: str, port: int, protocol: str, sni: str | None, *, timeout: float = 5
) -> str:
    """Lower-case hex SHA-256 of the served certificate's DER, as the controller names bundles."""
    return hashlib.sha256(
        served_certificate(host, port, protocol, sni, timeout=timeout)
    ).hexdigest()
