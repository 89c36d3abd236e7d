"""Talking to a server's agent: HTTPS pinned to the agent's own certificate, signed requests.

Pinning happens at the TLS handshake, before any request (and so any private key) is sent:
the agent's certificate is fetched once, its SHA-256 compared with the fingerprint the admin
registered, and that exact certificate becomes the only trust anchor of an ``ssl.SSLContext``
(``VERIFY_X509_PARTIAL_CHAIN`` lets a self-signed leaf anchor itself). Every request carries an
Ed25519 signature over method, path, body digest, time and nonce (``app.kit.signing``, after
RFC 9421). Redirects are never followed: a signed push goes where the admin said, or nowhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.kit.bounded import keep
from app.kit.conditions import condition
from app.kit.logs import request_id_var
from app.kit.signing import sign_request


class AgentError(Exception):
    """A delivery that did not apply. ``retryable`` says whether trying later may help."""

    def __init__(self, code: str, detail: str, *, retryable: bool, body: dict | None = None, status: int | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retryable = retryable
        self.body = body or {}
        self.status = status

    def condition(self, at) -> dict:
        """The failure as a deployment stores it (``app.kit.conditions``): the agent's own step,
        and its HTTP status, daemon, the daemon's words and whether it rolled back as details."""
        details = {"status": self.status, **{key: self.body.get(key) for key in ("daemon", "message", "rolled_back",
                                                                                   "missing")}}
        step = self.body.get("step")
        return condition(self.code, self.detail, at=at, step=step if isinstance(step, str) else None, details=details)


@dataclass(frozen=True)
class PinnedTls:
    context: ssl.SSLContext
    fingerprint: str


def _fetch_pinned_context(host: str, port: int, fingerprint: str, timeout: float) -> PinnedTls:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            probe.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    seen = hashlib.sha256(der).hexdigest()
    if seen != fingerprint:
        raise AgentError(
            "agent_tls_pin_mismatch",
            f"the agent presented a certificate with SHA-256 {seen}, not the registered {fingerprint}",
            retryable=True,
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(der))
    return PinnedTls(context, fingerprint)


class PinStore:
    """Pinned TLS contexts by (host, port, fingerprint), kept for the life of the process.

    Fetching the pin is a TCP connection and a TLS handshake of its own (3 to 4 ms on loopback,
    in a thread), paid before every delivery until this store: a tenth of what the controller
    spends on a one-domain change (docs/performance.md, section 8). A kept context trusts only
    the certificate pinned, so an agent that comes back with another one fails the handshake
    like before; the client then forgets the context and fetches again once, which reports the
    mismatch by name (``agent_tls_pin_mismatch``). A new registered fingerprint is a new key.
    Bounded: the oldest entry goes when ``limit`` is reached (one per registered agent)."""

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._pins: dict[tuple[str, int, str], PinnedTls] = {}

    def get(self, key: tuple[str, int, str]) -> PinnedTls | None:
        return self._pins.get(key)

    def put(self, key: tuple[str, int, str], pinned: PinnedTls) -> None:
        keep(self._pins, key, pinned, self.limit)

    def forget(self, key: tuple[str, int, str]) -> None:
        self._pins.pop(key, None)


class AgentClient:
    """One agent. Build per delivery; ``aclose()`` when done. With ``pins`` (the process's
    ``PinStore``) the pinned context is fetched once per agent, not once per client."""

    def __init__(self, base_url: str, fingerprint: str | None, signing_key: Ed25519PrivateKey, *, timeout: float = 120.0,
                 pins: PinStore | None = None):
        if not fingerprint:
            raise AgentError("agent_not_pinned", "the server has no agent_tls_fingerprint; set it with PATCH /v1/servers/{id}", retryable=False)
        self.base = httpx.URL(base_url)
        self.fingerprint = fingerprint
        self.signing_key = signing_key
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self.bytes_sent = 0
        self.pins = pins
        self._kept = False  # the current client's context came from ``pins``

    async def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            host, port = self.base.host, self.base.port or 443
            key = (host, port, self.fingerprint)
            pinned = self.pins.get(key) if self.pins is not None else None
            self._kept = pinned is not None
            if pinned is None:
                try:
                    pinned = await asyncio.to_thread(_fetch_pinned_context, host, port, self.fingerprint, min(self.timeout, 10.0))
                except AgentError:
                    raise
                except OSError as exc:
                    raise AgentError("agent_unreachable", f"cannot reach the agent at {self.base}: {exc}", retryable=True) from None
                if self.pins is not None:
                    self.pins.put(key, pinned)
            self._client = httpx.AsyncClient(
                verify=pinned.context, follow_redirects=False, timeout=httpx.Timeout(self.timeout, connect=10.0)
            )
        return self._client

    async def _forget_pin(self) -> None:
        """After a failed connection on a kept context: drop it and the client, so that the next
        attempt fetches the pin again and names what is wrong (``PinStore``)."""
        if self.pins is not None:
            self.pins.forget((self.base.host, self.base.port or 443, self.fingerprint))
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._kept = False

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _request(self, method: str, path: str, document: dict | None = None) -> dict:
        url = self.base.join(path)
        body = json.dumps(document, separators=(",", ":")).encode() if document is not None else b""
        target = url.raw_path.decode()
        headers = sign_request(self.signing_key, method, target, body)
        if document is not None:
            headers["Content-Type"] = "application/json"
        request_id = request_id_var.get()
        if request_id:  # the agent's access line carries it too (app/kit/requestlog.py)
            headers["X-Request-ID"] = request_id
        self.bytes_sent += len(body)
        try:
            try:
                response = await (await self._http()).request(method, url, content=body, headers=headers)
            except httpx.ConnectError:
                if not self._kept:
                    raise
                # Nothing was sent (the connection or its handshake failed): once more with the pin fetched again.
                await self._forget_pin()
                response = await (await self._http()).request(method, url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise AgentError("agent_timeout", f"the agent did not answer {method} {path} in {self.timeout} s", retryable=True) from None
        except httpx.HTTPError as exc:
            raise AgentError("agent_unreachable", f"{method} {path} failed: {type(exc).__name__}: {exc}", retryable=True) from None
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.is_redirect:
            raise AgentError("agent_redirected", "the agent answered with a redirect, which is never followed", retryable=False, status=response.status_code)
        if response.status_code >= 400 or payload.get("status") == "failed":
            code = payload.get("code") or ("agent_apply_failed" if payload.get("status") == "failed" else f"agent_http_{response.status_code}")
            detail = payload.get("detail") or payload.get("message") or response.reason_phrase
            retryable = response.status_code >= 500 or code == "missing_bundles"
            raise AgentError(code, str(detail), retryable=retryable, body=payload, status=response.status_code)
        return payload

    async def state(self) -> dict:
        return await self._request("GET", "/v1/state")

    async def observations(self, epoch: str | None, after: int, limit: int) -> dict:
        """What the agent's drift rounds saw since ``after`` (app/agent/drift.py)."""
        query = f"after={int(after)}&limit={int(limit)}" + (f"&epoch={epoch}" if epoch else "")
        return await self._request("GET", f"/v1/observations?{query}")

    async def put_bundles(self, generation: int, bundles: dict[str, dict]) -> dict:
        """Store bundles for ``generation`` ahead of its document (``PUT /v1/bundles``)."""
        return await self._request("PUT", "/v1/bundles", {"generation": generation, "bundles": bundles})

    async def put_config(self, document: dict) -> dict:
        return await self._request("PUT", "/v1/config", document)

    async def put_challenge(self, token: str, key_authorization: str, names: list[str]) -> dict:
        """Publish an HTTP-01 answer (RFC 8555 section 8.3) on the agent's web server."""
        return await self._request("PUT", f"/v1/acme-challenges/{token}",
                                   {"key_authorization": key_authorization, "names": names})

    async def delete_challenge(self, token: str) -> dict:
        return await self._request("DELETE", f"/v1/acme-challenges/{token}")
