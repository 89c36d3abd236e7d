"""The gate in front of the agent's API: size, signature and time, before the body is read.

The agent listens on the network and holds private keys, and its only legitimate client is the
controller. So nothing an unauthenticated client sends may cost more than a request head:

1. framing (RFC 9112 section 6): a body must come with ``Content-Length``; ``Transfer-Encoding``
   (chunked) is refused with 411, and a ``Content-Length`` above ``[listen] max_body_bytes`` with
   413 — both before a byte of the body is read;
2. the Ed25519 signature over method, target and ``Content-Digest`` (``app.kit.signing``, a
   profile of RFC 9421) is verified from the head alone: 401 without reading the body;
3. the body is then read within ``[listen] body_timeout`` (408 otherwise), streamed into SHA-256
   and compared with the signed ``Content-Digest`` (RFC 9530), then the nonce is remembered
   (replays: 401);
4. only then does the application see the request, with the body already in memory.

Every refusal before the body is read carries ``Connection: close``: uvicorn then closes the
connection instead of draining an unread body. A pure ASGI middleware rather than a FastAPI
dependency so that it covers every path, unknown ones included, and runs before routing.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading

from app.agent.config import ListenLimits
from app.agent.problems import PROBLEM_JSON, AgentProblem
from app.agent.state import NonceLedger
from app.kit.asgi import replaying
from app.kit.signing import (
    SignatureError,
    SignedRequest,
    check_digest,
    digest_value,
    verify_signature,
)

_SIGNATURE_TITLES = {
    "signature_missing": "Signature missing",
    "signature_invalid": "Signature invalid",
    "digest_mismatch": "Content digest mismatch",
    "signature_expired": "Signature expired",
}


def _header(scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope["headers"] if k.lower() == name]


def declared_length(scope, limits: ListenLimits) -> int:
    """The body size the head announces, or a :class:`AgentProblem` (411, 413, 400)."""
    if _header(scope, b"transfer-encoding"):
        raise AgentProblem(
            411,
            "length_required",
            "Length required",
            "send the body with a Content-Length; chunked transfer coding is not accepted",
        )
    values = _header(scope, b"content-length")
    if not values:
        return 0  # RFC 9112 section 6.3: no Content-Length and no Transfer-Encoding, no body
    try:
        length = int(values[0])
    except ValueError:
        length = -1
    if len(values) != 1 or length < 0:
        raise AgentProblem(400, "invalid_request", "Invalid request", "Content-Length is not valid")
    if length > limits.max_body_bytes:
        raise AgentProblem(
            413,
            "body_too_large",
            "Request body too large",
            f"the body is {length} bytes; this agent accepts at most {limits.max_body_bytes}"
            " ([listen] max_body_bytes)",
            max_body_bytes=limits.max_body_bytes,
        )
    return length


def _target(scope) -> str:
    """The request target exactly as sent (percent-encoding included), as the controller signed."""
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


def _signature_refusal(exc: SignatureError) -> AgentProblem:
    code = "signature_invalid" if exc.reason == "digest_mismatch" else exc.reason
    return AgentProblem(401, code, _SIGNATURE_TITLES[exc.reason], exc.detail)


class RequestGuard:
    """ASGI middleware: see the module docstring. ``ledger`` remembers nonces (replays)."""

    def __init__(
        self, app, *, public_key, ledger: NonceLedger, max_skew: int, limits: ListenLimits
    ) -> None:
        self.app = app
        self.public_key = public_key
        self.ledger = ledger
        self.max_skew = max_skew
        self.limits = limits
        self._ledger_lock = threading.Lock()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            length = declared_length(scope, self.limits)
            signed = self._verify_head(scope)
        except AgentProblem as refusal:
            await _send_problem(send, refusal, close=True)
            return
        try:
            body = await asyncio.wait_for(self._read(receive, length), self.limits.body_timeout)
        except TimeoutError:
            await _send_problem(
                send,
                AgentProblem(
                    408,
                    "request_timeout",
                    "Request timeout",
                    f"the body did not arrive within {self.limits.body_timeout} s"
                    " ([listen] body_timeout)",
                ),
                close=True,
            )
            return
        except _Disconnected:
            return
        body_bytes, digest = body
        try:
            check_digest(signed, digest)
        except SignatureError as exc:
            await _send_problem(send, _signature_refusal(exc), close=False)
            return
        with self._ledger_lock:
            fresh = self.ledger.remember(signed.nonce, signed.created)
        if not fresh:
            refusal = AgentProblem(
                401, "nonce_replayed", "Nonce replayed", "this request was already received"
            )
            await _send_problem(send, refusal, close=False)
            return

        await self.app(scope, replaying(body_bytes, receive), send)

    def _verify_head(self, scope) -> SignedRequest:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            return verify_signature(
                self.public_key, scope["method"], _target(scope), headers, max_skew=self.max_skew
            )
        except SignatureError as exc:
            raise _signature_refusal(exc) from None

    @staticmethod
    async def _read(receive, length: int) -> tuple[bytes, str]:
        """The body, hashed as it arrives; never more than ``length`` bytes are kept (the HTTP
        parser refuses a body longer than its ``Content-Length``; this is belt and braces)."""
        hasher = hashlib.sha256()
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > length:
                raise _Disconnected
            hasher.update(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks), digest_value(hasher.digest())


class _Disconnected(Exception):
    """The client went away (or sent more than it announced): nothing to answer."""


async def _send_problem(send, refusal: AgentProblem, *, close: bool) -> None:
    body = refusal.encoded()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
