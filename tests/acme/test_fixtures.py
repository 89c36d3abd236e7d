"""The Pebble fixture recovers from a Pebble that stops answering (it deadlocked once, under load)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from app.acme import issue, register_or_load_account

pytestmark = pytest.mark.acme


def _wait_until_stopped(pid: int, timeout: float = 10.0) -> None:
    """kill() returns before every thread of a busy process has stopped: on a loaded machine a
    request could still be answered. Wait for the kernel to report the whole process stopped."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        if "\nState:\tT" in status:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not stop")


def test_hung_pebble_is_restarted(pebble_server, dns_solver):
    old_pid, old_root = pebble_server.pid, pebble_server.issuing_roots_pem()
    os.kill(old_pid, signal.SIGSTOP)  # a hang: the process lives, no request is answered
    _wait_until_stopped(old_pid)
    try:
        assert pebble_server.ensure_alive(timeout=0.5) is True
    finally:
        if pebble_server.pid == old_pid:
            os.kill(old_pid, signal.SIGCONT)
    assert pebble_server.pid != old_pid
    assert pebble_server.issuing_roots_pem() != old_root
    assert pebble_server.ensure_alive() is False

    client, _, _ = register_or_load_account(
        pebble_server.directory_url, None, None, ca_bundle=pebble_server.ca_bundle
    )
    issue(client, ["z11.test"], "ec-p256", dns_solver, poll_interval=0.05)


def test_no_key_material_in_logs(pebble_server, bind_server, dns_solver, caplog):
    """Debug logging of the whole stack (ours, acme, urllib3) shows no private key or secret."""
    caplog.set_level("DEBUG")
    client, account_key_pem, _ = register_or_load_account(
        pebble_server.directory_url, None, None, ca_bundle=pebble_server.ca_bundle
    )
    issued = issue(client, ["z10.test", "*.z10.test"], "ec-p256", dns_solver, poll_interval=0.05)
    text = caplog.text
    assert "PRIVATE KEY" not in text
    for secret in (issued.private_key_pem, account_key_pem.decode(), bind_server.key_secret):
        body = "".join(secret.splitlines()[1:-1]) if "-----" in secret else secret
        assert body[:40] not in text.replace("\n", "")
