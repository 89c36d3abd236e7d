"""`certpost serve` starts without what it needs only later (docs/performance.md, section 6):
the ACME protocol layer and dnspython load with the first order, asyncpg only on PostgreSQL,
Alembic only in the child process that runs the migrations."""

from __future__ import annotations

import subprocess
import sys

from tests.support.serve import REPO

PROBE = """
import sys
from app.config import Settings
from app.main import create_app
import app.scheduler.worker, app.acme.renewal, app.acme.router
create_app(Settings(data_dir=sys.argv[1], database_url="sqlite+aiosqlite:///" + sys.argv[1] + "/x.db"))
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"requests", "acme", "josepy", "OpenSSL", "dns", "asyncpg", "alembic"})))
"""


def test_the_server_starts_without_acme_dns_asyncpg_or_alembic(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "", out.stdout


def test_the_lazy_acme_names_still_resolve():
    from app import acme

    assert acme.issue.__module__ == "app.acme.order" and acme.Dns01Solver.__name__ == "Dns01Solver"
