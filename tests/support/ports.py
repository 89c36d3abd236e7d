"""Free loopback ports for the servers the tests start.

A port is chosen at random BELOW the kernel's ephemeral range and never handed out twice in
one test run. Asking the kernel for port 0 instead (and closing the socket) returns a port from
the ephemeral range, which any outgoing connection made before the daemon binds it (a client to
PostgreSQL, to the agent, to Pebble) may take first, and which the kernel may hand out again at
the next call: both showed up as "Address already in use" on a loaded machine.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_given: set[int] = set()


def _range() -> tuple[int, int]:
    """CERTPOST_TEST_PORTS (``low-high``) when set, so that two runs side by side (make test runs
    SQLite and PostgreSQL at once) never pick the same port; otherwise the ports below
    /proc/sys/net/ipv4/ip_local_port_range (Linux default 32768-60999)."""
    chosen = os.environ.get("CERTPOST_TEST_PORTS", "")
    if chosen:
        low_text, _, high_text = chosen.partition("-")
        return int(low_text), int(high_text)
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10000, low - 1) if low > 12000 else (low, 65535)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and no other caller got."""
    low, high = _range()
    for _ in range(500):
        port = random.randint(low, high)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port found in {low}-{high}")
