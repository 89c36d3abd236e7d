"""Refuse request bodies over the limit before they are parsed (413 ``payload_too_large``).

A pure ASGI middleware. A declared Content-Length over the limit is refused at once. Otherwise
the body (chunked or not) is read here, at most ``max_bytes`` of it, and refused as soon as it
passes the limit; an acceptable body is then replayed to the application. So no JSON or
multipart parser ever sees an oversized body, and at most 1 MiB per request is buffered.
"""

from __future__ import annotations

import json

from app.kit.asgi import replaying
from app.problems import PayloadTooLarge


class BodySizeLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await self._refuse(send)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._refuse(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        return await self.app(scope, replaying(body, receive), send)

    async def _refuse(self, send) -> None:
        problem = PayloadTooLarge(f"the request body is larger than {self.max_bytes} bytes")
        body = json.dumps(problem.body()).encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})
