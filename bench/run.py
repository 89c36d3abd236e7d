"""Run every benchmark, one after another (they share the machine's two cores: never in parallel).

    .venv/bin/python bench/run.py [--quick]        # `make bench` runs the full set

Each writes bench/results/<name>.json; see docs/performance.md for what they measure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = (
    "api.py", "reads.py", "domain_tls.py", "e2e.py", "changes.py", "agent_steps.py", "agent_apply.py",
    "dovecot_capacity.py", "haproxy_front.py", "haproxy_alone.py", "acme_orders.py", "renewal_scan.py",
    "hostile_uploads.py", "workers.py", "metrics_scrape.py", "retention_prune.py",
)


def main() -> int:
    extra = [a for a in sys.argv[1:] if a == "--quick"]
    failed = []
    for script in SCRIPTS:
        print(f"\n######## {script} {' '.join(extra)}", flush=True)
        started = time.perf_counter()
        rc = subprocess.run([sys.executable, str(BENCH / script), *extra], cwd=BENCH.parent, check=False).returncode
        print(f"######## {script}: exit {rc} after {time.perf_counter() - started:.0f} s", flush=True)
        if rc:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
