"""Webhook tests: real HTTP receivers on loopback, a worker context with a short retry schedule."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from app.context import AppContext
from app.main import create_app
from tests.support.receiver import start_receiver

FAST = {"webhook_retry_schedule": "0.2,0.2,0.2,0.2", "webhook_timeout_seconds": 1.0, "lease_seconds": 5.0}


@pytest.fixture
def receivers():
    """A factory of running receivers, all stopped after the test."""
    servers = []

    def make():
        receiver, server = start_receiver()
        servers.append(server)
        return receiver

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def webhook_context(context, settings):
    """A factory: an AppContext on the test database with settings changed (a short retry schedule
    by default), as `certpost worker` started with those CERTPOST_* variables would have."""
    made = []

    def make(**changes) -> AppContext:
        ctx = AppContext.build(settings.model_copy(update={**FAST, **changes}))
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        await ctx.close()


@pytest.fixture
async def make_api(webhook_context):
    """A factory: an API client and its context (the same settings the worker uses)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**changes):
            ctx = webhook_context(**changes)
            application = create_app(context=ctx, run_worker=False)
            application.state.ctx = ctx
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://certpost.test")
            await stack.enter_async_context(client)
            return client, ctx

        yield make


@pytest.fixture
async def api(make_api):
    return await make_api()
