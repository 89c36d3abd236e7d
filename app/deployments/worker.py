"""Placeholder replaced by the deployment worker."""

import asyncio


async def run_forever(ctx) -> None:
    while True:
        await asyncio.sleep(3600)
