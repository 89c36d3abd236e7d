"""One HTTP attempt of a webhook delivery: bounded in time, no redirects, nothing read back.

Only the status code (and ``Retry-After``) is kept: the receiver's body is not read, so a
receiver cannot make the worker hold a large answer, and nothing it says ends up in the
database. Every failure (refused target, connection error, timeout, non-2xx) becomes a short
``error`` text for the delivery log; a customer's log never shows what its host resolved to.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import certifi
import httpx

from app.kit.outbound import OutboundRefused
from app.outbound import RESOLVE_TIMEOUT, OutboundGuard
from app.webhooks import targets

USER_AGENT = "certpost-webhooks/1"
TARGET_RULE = "https on port 443 to a host whose every address is public"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after: str | None = None


def client_tls(extra_bundle) -> ssl.SSLContext:
    """Mozilla's roots (certifi), plus the operator's bundle (CERTPOST_TRUST_BUNDLE)."""
    context = ssl.create_default_context(cafile=certifi.where())
    if extra_bundle:
        context.load_verify_locations(cafile=str(extra_bundle))
    return context


async def send(client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes, *,
               guard: OutboundGuard | None, timeout: float) -> Outcome:
    started = time.monotonic()

    def done(status: int | None, error: str | None, retry_after: str | None = None) -> Outcome:
        return Outcome(status, error, int((time.monotonic() - started) * 1000), retry_after)

    try:
        target = await asyncio.wait_for(asyncio.to_thread(targets.resolve, url, guard), RESOLVE_TIMEOUT + 1)
    except OutboundRefused:
        # Not the guard's reason, which names the addresses the host resolved to: with an
        # internal resolver (CERTPOST_OUTBOUND_RESOLVER) a customer could point its name at
        # internal ones (a CNAME) and read the internal answers off its delivery log.
        return done(None, f"target not allowed: {TARGET_RULE}")
    except TimeoutError:
        return done(None, "target not allowed: resolution timed out")
    sent = {**headers, "user-agent": USER_AGENT}
    if target.host_header:
        sent["host"] = target.host_header
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    try:
        async with asyncio.timeout(timeout):  # the whole exchange, not per read: a trickling receiver ends too
            request = client.build_request("POST", target.url, content=body, headers=sent,
                                           extensions=extensions, timeout=timeout)
            response = await client.send(request, stream=True, follow_redirects=False)
            await response.aclose()
    except TimeoutError:
        return done(None, f"timed out after {timeout:g} s")
    except httpx.TimeoutException:
        return done(None, f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return done(None, f"{type(exc).__name__}: {exc}"[:500])
    except (ValueError, OSError) as exc:
        # What httpx raises outside its own hierarchy (a header it cannot encode, a socket error
        # before its transport wraps it): one failed attempt, never a crash of the webhook's job,
        # which would leave the delivery unrecorded and claimed again at every lease, forever.
        return done(None, f"request failed: {type(exc).__name__}"[:500])
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return done(response.status_code, error, response.headers.get("retry-after"))
