"""What a client that is not the controller can cost the agent: a request head, nothing more.

Against the real ``certpost agent --config FILE`` subprocess (no daemons needed), over raw TLS
sockets so the test controls exactly what is sent and when. Memory is read from
/proc/<pid>/status of the agent process itself.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.agent.config import ListenLimits
from app.kit.signing import public_key_to_text, sign_request
from tests.support.daemons import AgentProcess, bare_stack
from tests.support.pki import CA

MiB = 1024 * 1024
CAP = 64 * MiB
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5

KEY = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    stack = bare_stack(
        tmp_path_factory.mktemp("limits"),
        public_key_to_text(KEY.public_key()),
        max_body_bytes=CAP,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        keepalive_timeout=1,
    )
    process = AgentProcess(stack)
    process.start()
    yield stack, process
    process.stop()


def peak_rss_kib(process: AgentProcess) -> int:
    """VmHWM: the peak resident set, so memory taken and given back still counts."""
    with open(f"/proc/{process.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def connect(stack) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(stack.state_dir / "tls" / "agent.crt"))
    context.check_hostname = False
    sock = socket.create_connection(("127.0.0.1", stack.ports["agent"]), timeout=10)
    return context.wrap_socket(sock)


def head(method: str, target: str, headers: dict) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: agent",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: ssl.SSLSocket, timeout: float = 5) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one response, read until the connection closes."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, {k.lower(): v for k, v in headers.items()}, body


def closed_within(sock: ssl.SSLSocket, seconds: float) -> bool:
    """True when the server closes the connection within ``seconds`` (EOF or reset)."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False
    return False


def pump(sock: ssl.SSLSocket, limit: int) -> int:
    """Send body bytes as fast as the agent takes them, until it closes; bytes sent."""
    sent = 0
    chunk = b"x" * MiB
    sock.settimeout(10)
    try:
        while sent < limit:
            sock.sendall(chunk)
            sent += len(chunk)
    except (OSError, ssl.SSLError):
        pass
    return sent


def test_unsigned_oversized_body_is_refused_before_it_is_read(agent):
    stack, _ = agent
    sock = connect(stack)
    started = time.monotonic()
    sock.sendall(
        head("PUT", "/v1/config", {"Content-Length": 400 * MiB, "Content-Type": "application/json"})
    )
    status, headers, body = read_response(sock)
    elapsed = time.monotonic() - started
    sock.close()
    assert status == 413 and headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["code"] == "body_too_large" and problem["max_body_bytes"] == CAP
    assert headers["connection"] == "close"
    assert elapsed < 1.0, elapsed


def test_signed_oversized_body_is_refused_before_it_is_read(agent):
    stack, _ = agent
    headers = sign_request(KEY, "PUT", "/v1/config", b"{}")
    headers["Content-Length"] = str(CAP + 1)
    sock = connect(stack)
    sock.sendall(head("PUT", "/v1/config", headers))
    status, _, body = read_response(sock)
    sock.close()
    assert status == 413 and json.loads(body)["code"] == "body_too_large"


@pytest.mark.parametrize("signed_by", [None, "another key"])
def test_a_body_within_the_cap_is_not_read_without_a_valid_signature(agent, signed_by):
    """The 400 MiB attack, scaled to the cap: the agent answers 401 from the head alone and
    closes; the client cannot push the body into the agent's memory."""
    stack, process = agent
    before = peak_rss_kib(process)
    sock = connect(stack)
    headers = {"Content-Length": CAP, "Content-Type": "application/json"}
    if signed_by:
        headers |= sign_request(Ed25519PrivateKey.generate(), "PUT", "/v1/config", b"x" * 10)
    sock.sendall(head("PUT", "/v1/config", headers))
    started = time.monotonic()
    sent = pump(sock, CAP)
    elapsed = time.monotonic() - started
    sock.close()
    after = peak_rss_kib(process)
    assert sent < CAP // 4, f"the agent took {sent} bytes of an unsigned body"
    assert elapsed < 5, elapsed
    assert after - before < 16 * 1024, f"peak RSS grew from {before} to {after} KiB"


def _put_config_signed_for(stack, signed: bytes, sent: bytes) -> tuple[int, dict]:
    """PUT /v1/config over a raw socket with a signature made for ``signed``, sending ``sent``."""
    sock = connect(stack)
    headers = {**sign_request(KEY, "PUT", "/v1/config", signed), "Content-Length": len(sent)}
    sock.sendall(head("PUT", "/v1/config", headers) + sent)
    status, _, answer = read_response(sock)
    sock.close()
    return status, json.loads(answer)


def test_a_signed_body_is_streamed_into_the_digest_and_checked(agent):
    stack, _ = agent
    body = b'{"not": "a configuration"}'
    status, answer = _put_config_signed_for(stack, body, body)
    assert status == 400 and answer["code"] == "invalid_request"

    status, answer = _put_config_signed_for(stack, body, b'{"not": "what was signed"}')
    assert status == 401 and answer["code"] == "signature_invalid"


def test_chunked_bodies_are_refused(agent):
    stack, _ = agent
    sock = connect(stack)
    headers = {**sign_request(KEY, "PUT", "/v1/config", b"{}"), "Transfer-Encoding": "chunked"}
    sock.sendall(head("PUT", "/v1/config", headers) + b"2\r\n{}\r\n0\r\n\r\n")
    status, _, body = read_response(sock)
    sock.close()
    assert status == 411 and json.loads(body)["code"] == "length_required"


def test_a_slow_body_is_cut_off(agent):
    stack, _ = agent
    body = b'{"generation": 1}' + b" " * 100
    sock = connect(stack)
    sock.sendall(
        head(
            "PUT",
            "/v1/config",
            {**sign_request(KEY, "PUT", "/v1/config", body), "Content-Length": len(body)},
        )
        + body[:10]
    )
    started = time.monotonic()
    status, _, answer = read_response(sock, timeout=BODY_TIMEOUT + 5)
    elapsed = time.monotonic() - started
    assert status == 408 and json.loads(answer)["code"] == "request_timeout"
    assert BODY_TIMEOUT - 0.2 <= elapsed < BODY_TIMEOUT + 2, elapsed
    assert closed_within(sock, 2)
    sock.close()


def test_a_slow_request_head_is_cut_off(agent):
    """Slowloris: a byte of the head now and then never completes a request."""
    stack, _ = agent
    sock = connect(stack)
    started = time.monotonic()
    sock.sendall(b"GET /v1/state HTTP/1.1\r\n")
    closed = False
    try:
        for _ in range(20):
            sock.sendall(b"X")
            time.sleep(0.25)
    except (OSError, ssl.SSLError):
        closed = True
    closed = closed or closed_within(sock, 1)
    elapsed = time.monotonic() - started
    sock.close()
    assert closed and elapsed < HEADER_TIMEOUT + 2.5, elapsed


def test_an_idle_connection_is_closed(agent):
    stack, _ = agent
    sock = connect(stack)
    started = time.monotonic()
    assert closed_within(sock, HEADER_TIMEOUT + 2)
    assert time.monotonic() - started < HEADER_TIMEOUT + 1.5
    sock.close()


def test_the_default_cap_holds_a_full_apply_at_10000_domains():
    """docs/agent.md "Request limits": a full document at 10,000 domains with RSA-4096 keys,
    each its own certificate and one intermediate, fits the default with room to spare."""
    ca = CA.create("Limits test root", key_type="rsa-2048").intermediate(
        "Limits test intermediate", key_type="rsa-2048"
    )
    issued = ca.issue(
        ["mail.customer-domain-00000.example", "webmail.customer-domain-00000.example"],
        key_type="rsa-4096",
    )
    bundle = {
        "key_pem": issued.key_pem,
        "certificate_pem": issued.cert_pem,
        "chain_pem": issued.chain_pem,
    }
    doc = {
        "generation": 1,
        "server_hostname": "mx1.host.test",
        "server_certificate": "0" * 64,
        "webmail_default": "0" * 64,
        "mail": {},
        "webmail": {},
        "bundles": {},
    }
    for i in range(10_000):
        fp = hashlib.sha256(str(i).encode()).hexdigest()
        doc["mail"][f"mail.customer-domain-{i:05d}.example"] = fp
        doc["webmail"][f"webmail.customer-domain-{i:05d}.example"] = fp
        doc["bundles"][fp] = bundle
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    assert 40 * MiB < size < ListenLimits().max_body_bytes * 0.6, size
