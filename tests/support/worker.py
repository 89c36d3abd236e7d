"""Driving the real worker from tests until something is true."""

from __future__ import annotations

import asyncio
import time

from app.deployments.worker import Worker


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
