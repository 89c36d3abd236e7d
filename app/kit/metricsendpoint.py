"""``GET /metrics`` for Prometheus, behind a dedicated bearer token; shared by controller and agent.

Why a token on the existing listener rather than a second listener on loopback: Prometheus
rarely runs on the host it scrapes, so a loopback listener would have to be re-bound to some
address and firewalled by hand on every mail server and controller; the agent's listener
already has TLS and a gate, and the controller usually sits behind a proxy that customers also
reach. A token works through all of that, and Prometheus sends one natively
(``authorization: {credentials_file: …}``).

The token is a setting of its own (``CERTPOST_METRICS_TOKEN``, the agent's ``[metrics]``
section), never an API token: it can read the metrics and nothing else, and a Prometheus
configuration that leaks gives away no API access. The metrics name every customer's
certificates and domains' counts, so they are never public: with no token configured
``/metrics`` does not exist (the request goes on to the application, which answers 404), and
a request without the right token gets 401 before anything is computed. Tokens are compared as
SHA-256 digests with :func:`hmac.compare_digest`.

Bodies are gzip-compressed when the scraper accepts it (Prometheus does): at 100,000
certificates the text is tens of megabytes and compresses about tenfold.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable

from app.kit.requestlog import ROUTE_KEY

PATH = "/metrics"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MIN_TOKEN_LENGTH = 24

Render = Callable[[], Awaitable[bytes]]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer(scope) -> str | None:
    """The credentials of ``Authorization: Bearer <token>`` (RFC 6750 section 2.1), if any."""
    for key, value in scope["headers"]:
        if key.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


def _accepts_gzip(scope) -> bool:
    for key, value in scope["headers"]:
        if key.lower() == b"accept-encoding":
            codings = [part.split(b";")[0].strip().lower() for part in value.split(b",")]
            if b"gzip" in codings:
                return True
    return False


class MetricsEndpoint:
    """ASGI middleware answering ``/metrics`` (see the module docstring); ``render`` returns the
    exposition text. Every other path goes on to ``app`` untouched. ``digest`` is
    :func:`token_digest` of the token, None when none is configured."""

    def __init__(self, app, *, digest: bytes | None, render: Render) -> None:
        self.app = app
        self.digest = digest  # token_digest(token): the token itself is kept nowhere
        self.render = render

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or self.digest is None:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = PATH
        if scope["method"] not in ("GET", "HEAD"):
            await _send(send, 405, _problem(405, "Method not allowed", "only GET reads the metrics"),
                        [(b"allow", b"GET, HEAD")])
            return
        given = bearer(scope)
        if given is None or not hmac.compare_digest(token_digest(given), self.digest):
            await _send(send, 401, _problem(401, "Unauthorized", "send the metrics token: Authorization: Bearer <token>"),
                        [(b"www-authenticate", b'Bearer realm="certpost metrics"')])
            return
        body = await self.render()
        headers = [(b"content-type", CONTENT_TYPE), (b"cache-control", b"no-store")]
        if _accepts_gzip(scope):
            body = await asyncio.to_thread(gzip.compress, body, 6)
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"vary", b"accept-encoding"))
        await _send(send, 200, b"" if scope["method"] == "HEAD" else body, headers, length=len(body))


def _problem(status: int, title: str, detail: str) -> bytes:
    return json.dumps({"title": title, "status": status, "detail": detail}).encode()


async def _send(send, status: int, body: bytes, headers: list, *, length: int | None = None) -> None:
    if status >= 400:
        headers = [(b"content-type", b"application/problem+json"), *headers]
    headers = [*headers, (b"content-length", str(len(body) if length is None else length).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
