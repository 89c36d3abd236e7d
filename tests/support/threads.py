"""Running blocking or ``asyncio.run`` code from inside a test's event loop."""

from __future__ import annotations

import threading


def in_thread(fn, *args):
    """``fn(*args)`` in a thread of its own, its result returned and its exception re-raised:
    for set-up that calls ``asyncio.run`` (Alembic's env, a one-off asyncpg query), which cannot
    run on the test's loop."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
