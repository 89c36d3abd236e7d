"""Conditional GETs for what panels poll: an ``ETag`` of the body and 304 on ``If-None-Match``.

A panel refreshes a domain's TLS status, or a page of the domain list, every few seconds; most
answers are what it already holds. Every JSON ``200`` to a GET that does not carry a resource's
own tag gets a strong ``ETag`` computed from the exact bytes of the body (RFC 9110 section
8.8.3), and a GET whose ``If-None-Match`` names it (weak comparison, section 13.1.2) is answered
``304 Not Modified`` with no body (section 15.4.5).

The body is still computed on every request: the tag is of what certpost would send *now*,
so a 304 can never hide a warning that appeared since (app/preconditions.py explains why the
row-version tags of resources are not used for 304: what a GET derives from other rows and the
clock is not in them). Responses that already carry an ``ETag`` (a resource's version tag, the
one ``If-Match`` takes) keep it and are never answered with 304. What this saves is the
transfer and the client's parsing, not the server's work.

``Cache-Control: private, no-cache``: the answer depends on the token (a customer sees its own
rows), so no shared cache may keep it, and the client must revalidate before reusing it.

A pure ASGI middleware: streamed bodies (the NDJSON and CSV exports) are not JSON and pass
untouched; a JSON body is buffered up to ``MAX_BUFFER`` bytes and passed untouched beyond that.
"""

from __future__ import annotations

import base64
import hashlib

MAX_BUFFER = 8 * 1024 * 1024
CACHE_CONTROL = b"private, no-cache"


def body_tag(body: bytes) -> str:
    """A strong entity tag for these exact bytes (quoted, RFC 9110 section 8.8.3)."""
    return '"' + base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:16]).decode().rstrip("=") + '"'


def none_match(header: str | None, tag: str) -> bool:
    """True when ``If-None-Match`` names ``tag`` or is ``*`` (weak comparison: ``W/`` ignored)."""
    if header is None:
        return False
    header = header.strip()
    if header == "*":
        return True
    wanted = tag.removeprefix("W/")
    return any(part.strip().removeprefix("W/") == wanted for part in header.split(","))


def _header(headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class ConditionalGet:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        raw = _header(scope.get("headers", ()), b"if-none-match")
        asked = raw.decode("latin-1") if raw is not None else None
        start: dict | None = None
        chunks: list[bytes] = []
        size = 0
        passing = False

        async def conditional_send(message):
            nonlocal start, size, passing
            if passing:
                return await send(message)
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                kind = (_header(headers, b"content-type") or b"").split(b";")[0].strip()
                if message["status"] != 200 or kind != b"application/json" or _header(headers, b"etag"):
                    passing = True
                    return await send(message)
                start = message
                return None
            if message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BUFFER:  # too large to hold: send what there is, untagged
                passing = True
                await send(start)
                return await send({**message, "body": b"".join(chunks)})
            if message.get("more_body", False):
                return None
            return await self._finish(send, start, b"".join(chunks), asked)

        return await self.app(scope, receive, conditional_send)

    @staticmethod
    async def _finish(send, start: dict, body: bytes, asked: str | None) -> None:
        tag = body_tag(body).encode()
        extra = [(b"etag", tag)]
        if _header(start.get("headers", []), b"cache-control") is None:
            extra.append((b"cache-control", CACHE_CONTROL))
        if none_match(asked, tag.decode()):
            kept = [(k, v) for k, v in start.get("headers", [])
                    if k.lower() not in (b"content-length", b"content-type")]
            await send({"type": "http.response.start", "status": 304, "headers": kept + extra})
            return await send({"type": "http.response.body", "body": b""})
        await send({**start, "headers": list(start.get("headers", [])) + extra})
        return await send({"type": "http.response.body", "body": body})
