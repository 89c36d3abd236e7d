"""The controller's /metrics at scale: the database figures for N served certificates (each bound
as the mail certificate of a domain of its own), on SQLite and PostgreSQL.

    .venv/bin/python bench/metrics_scrape.py [--quick] [--rows 100000] [--runs 3] [--backends sqlite,postgres]

Each backend gets a fresh database built by the real migrations, filled by bulk INSERT (one
server, N domains, N certificates with one name each, N mail bindings). Timed, median of
``--runs``: ``read_snapshot`` (the aggregate statements, through the application's engine),
``render_snapshot`` (the exposition text, which the server runs in a worker thread), and gzip
(what Prometheus receives); with the text's size before and after compression. Results in
bench/results/metrics_scrape.json; figures in docs/performance.md, section 12.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, human_bytes, median, table, write_results
from renewal_scan import fresh_database

sys.path.insert(0, str(REPO))

from sqlalchemy import insert

from app.certificates.models import Certificate, CertificateName
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.domains import tls_upkeep
from app.domains.models import Binding, Domain
from app.kit.time import utc_now
from app.metrics.controller import read_snapshot, render_snapshot
from app.migrate import upgrade
from app.servers.models import Server


def certificate(i: int, now, account_id: str | None) -> dict:
    return {
        "id": str(uuid.UUID(int=i + 1, version=4)), "created_at": now, "updated_at": now,
        "account_id": account_id, "name": None, "source": "upload", "subject": f"CN=d{i}.test",
        "issuer": "CN=Bench CA", "serial": f"{i:032x}", "sans": [f"*.d{i}.test"],
        "not_before": now - timedelta(days=10), "not_after": now + timedelta(days=30 + i % 60),
        "fingerprint_sha256": f"{i:064x}", "key_type": "ec", "key_bits": 256, "self_signed": False,
        "trusted": True, "chain_length": 1, "certificate_pem": "-", "chain_pem": "", "key_ciphertext": b"-",
        "key_wrapped": b"-", "master_key_id": "bench", "revision": 1, "renewal_attempts": 0,
    }


async def fill(sessionmaker, rows: int) -> None:
    now = utc_now()
    account = str(uuid.uuid4())
    async with sessionmaker() as session:
        from app.accounts.models import Account

        await session.execute(insert(Account), [{"id": account, "name": "bench", "created_at": now, "updated_at": now}])
        default = certificate(rows, now, None)
        await session.execute(insert(Certificate), [default])
        server = str(uuid.uuid4())
        await session.execute(insert(Server), [{
            "id": server, "name": "bench", "hostname": "mx.bench.test", "software": "postfix-dovecot",
            "mail_certificate_id": default["id"], "default_certificate_id": default["id"],
            "desired_generation": 1, "applied_generation": 0, "created_at": now, "updated_at": now}])
        for start in range(0, rows, 5000):
            chunk = range(start, min(rows, start + 5000))
            certs = [certificate(i, now, account) for i in chunk]
            await session.execute(insert(Certificate), certs)
            await session.execute(insert(CertificateName), [{"certificate_id": c["id"], "name": c["sans"][0]} for c in certs])
            domains = [{"id": str(uuid.uuid4()), "name": f"d{i}.test", "server_id": server, "account_id": account,
                        "created_at": now, "updated_at": now} for i in chunk]
            await session.execute(insert(Domain), domains)
            await session.execute(insert(Binding), [
                {"id": str(uuid.uuid4()), "domain_id": d["id"], "service": "mail", "certificate_id": c["id"],
                 "created_at": now, "updated_at": now} for d, c in zip(domains, certs, strict=True)])
        await tls_upkeep.everything(session)  # what the API's writes keep (app/domains/tls_upkeep.py)
        await session.commit()


async def measure(backend: str, rows: int, runs: int, tmp: Path) -> dict:
    url, drop = await fresh_database(backend, tmp)
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(Settings(database_url=url, data_dir=tmp))
        sessionmaker = create_sessionmaker(engine)
        await fill(sessionmaker, rows)
        reads, renders, zips = [], [], []
        for _ in range(runs):
            started = time.perf_counter()
            snapshot = await read_snapshot(sessionmaker)
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            text = render_snapshot(snapshot)
            renders.append(time.perf_counter() - started)
            started = time.perf_counter()
            packed = gzip.compress(text, 6)
            zips.append(time.perf_counter() - started)
        await engine.dispose()
        return {"backend": backend, "rows": rows, "series": len(snapshot.certificates),
                "read_s": median(reads), "render_s": median(renders), "gzip_s": median(zips),
                "text_bytes": len(text), "gzip_bytes": len(packed)}
    finally:
        await drop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true", help="10,000 certificates, one run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.runs = 10_000, 1
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            results.append(await measure(backend, args.rows, args.runs, Path(tmp)))
    print(table(["backend", "certificates", "series", "read s", "render s", "gzip s", "text", "gzip"],
                [[r["backend"], r["rows"], r["series"], r["read_s"], r["render_s"], r["gzip_s"],
                  human_bytes(r["text_bytes"]), human_bytes(r["gzip_bytes"])] for r in results]))
    write_results("metrics_scrape", {"results": results})


if __name__ == "__main__":
    asyncio.run(main())
