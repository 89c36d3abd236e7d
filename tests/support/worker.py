"""Driving the real worker from tests until something is true."""

from __future__ import annotations

import asyncio
import time

from app.scheduler.worker import Worker


async def work_until(context, predicate, *, timeout: float = 60.0, worker: Worker | None = None):
    """Run worker rounds (claims, deliveries, orders) until ``await predicate()`` is truthy."""
    worker = worker or Worker(context, owner="test-worker")
    deadline = time.monotonic() + timeout
    while True:
        await worker.round()
        await worker.drain()
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not get there in time")
        await asyncio.sleep(0.05)


def order_finished(client, headers, order_id):
    """Predicate for ``work_until``: the order once it is valid or invalid."""

    async def check():
        body = (await client.get(f"/v1/certificate-orders/{order_id}", headers=headers)).json()
        return body if body["status"] in ("valid", "invalid") else None

    return check


def server_applied(client, admin, server_id):
    """Predicate for ``work_until``: the server once it applied its desired generation."""

    async def check():
        body = (await client.get(f"/v1/servers/{server_id}", headers=admin)).json()
        return body if body["applied_generation"] == body["desired_generation"] else None

    return check
