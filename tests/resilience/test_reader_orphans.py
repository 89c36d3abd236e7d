"""A `certpost serve` killed outright leaves no certificate reader behind.

The readers are worker processes of their own (app/certificates/reading.py); a pool shut down
ends them, but SIGKILL shuts nothing down. Through the `certpost` command as typed, with a real
upload so that the readers exist, then SIGKILL, as the OOM killer would.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support.pki import CA
from tests.support.serve import ServeProcess


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = task / "children"
        if children.exists():
            found |= {int(c) for c in children.read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_readers_end_when_serve_is_killed(tmp_path):
    issued = CA.create("orphans root").issue(["mail.orphans.test"])
    serve = ServeProcess(tmp_path / "data").start()
    try:
        token = serve.wait_token()
        stored = httpx.post(f"{serve.url}/v1/certificates", headers={"Authorization": f"Bearer {token}"},
                            json={"certificate_pem": issued.cert_pem, "private_key_pem": issued.key_pem}, timeout=60)
        assert stored.status_code == 201, stored.text
        readers = {pid for pid in _children(serve.process.pid)
                   if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        assert readers, "the upload started no reader process"
    finally:
        serve.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in readers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in readers), [pid for pid in readers if _alive(pid)]
