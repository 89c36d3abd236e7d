"""A digest of a server's desired configuration, computed the same way by controller and agent.

SHA-256 over canonical JSON (sorted keys, no spaces) of the document without its generation and
without bundles. The controller compares it with what the agent reports as applied, so an agent
that already serves exactly the desired content at that generation is not pushed again, and an
agent whose generation counter is ahead (a re-registered server, a restored database) is told
apart from one that is up to date.
"""

from __future__ import annotations

import hashlib
import json


def config_digest(document: dict) -> str:
    content = {k: v for k, v in document.items() if k not in ("generation", "bundles")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
