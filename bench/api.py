"""API hot paths at scale: one server with N domains, each with its own certificate bound to
webmail and mail. Times the reads a control panel makes most and one binding change.

    .venv/bin/python bench/api.py [--quick] [--domains 10000] [--postgres]

Seeding goes through the services (not HTTP) in batches, so it is not part of any timing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from common import create_pg_database, drop_pg_database, machine, table, write_results
from seeding import ADMIN, store_issued, tenant

from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.config import Settings
from app.context import AppContext
from app.deployments.desired import load_desired
from app.domains.repository import DomainRepository
from app.domains.service import DomainService
from app.main import create_app
from app.migrate import upgrade
from app.servers.models import Server
from tests.support.pki import CA, write_pem


async def seed(ctx: AppContext, ca: CA, count: int) -> tuple[str, str]:
    bench = await tenant(ctx)
    batch = 500
    for start in range(0, count, batch):
        async with ctx.sessionmaker() as session:
            certs = CertificateService(CertificateRepository(session), ctx.master_key)
            domains = DomainService(DomainRepository(session), certs)
            for i in range(start, min(count, start + batch)):
                name = f"d{i:05d}.bench.test"
                cert = await store_issued(ctx, certs, ca, [f"webmail.{name}", f"mail.{name}"], bench.account_id, name)
                await domains.create(name, bench.server_id, bench.account_id)
                await domains.bind(ADMIN, name, "webmail", cert.id)
                await domains.bind(ADMIN, name, "mail", cert.id)
            await session.commit()
    return bench.token, bench.server_id


async def timed(client, method, url, headers, repeat=20, **kw) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        r = await client.request(method, url, headers=headers, **kw)
        samples.append(time.perf_counter() - started)
        assert r.status_code < 300, r.text
    return statistics.median(samples) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--domains", type=int, default=None)
    parser.add_argument("--postgres", action="store_true", help="use a fresh database on 127.0.0.1:5432")
    args = parser.parse_args()
    count = args.domains or (1000 if args.quick else 10000)
    tmp = Path(tempfile.mkdtemp(prefix="certpost-bench-api-"))
    ca = CA.create("bench root")
    issuing = ca.intermediate("bench issuing")
    if args.postgres:
        url, name = await create_pg_database("certpost_bench")
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(data_dir=tmp, database_url=url, run_worker=False,
                        trust_bundle=write_pem(tmp / "trust.pem", ca.cert_pem))
    ctx = AppContext.build(settings)
    started = time.perf_counter()
    token, server_id = await seed(ctx, issuing, count)
    seeded = time.perf_counter() - started
    app = create_app(context=ctx, run_worker=False)
    app.state.ctx = ctx
    headers = {"Authorization": f"Bearer {token}"}
    rows = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        middle = f"d{count // 2:05d}.bench.test"
        cases = [
            ("GET /v1/certificates?covers=mail.<d> (indexed SAN lookup)", "GET", f"/v1/certificates?covers=mail.{middle}"),
            ("GET /v1/certificates?limit=500 (one page, with bindings)", "GET", "/v1/certificates?limit=500"),
            ("GET /v1/certificates?expires_before=… (limit 100)", "GET", "/v1/certificates?expires_before=2100-01-01T00:00:00Z&limit=100"),
            ("GET /v1/domains/<d>/tls", "GET", f"/v1/domains/{middle}/tls"),
            ("GET /v1/servers/<id> (with mail-certificate count)", "GET", f"/v1/servers/{server_id}"),
            ("GET /v1/servers/<id>/config (whole desired state)", "GET", f"/v1/servers/{server_id}/config"),
        ]
        for label, method, url_ in cases:
            rows.append([label, round(await timed(client, method, url_, headers, repeat=5 if "config" in url_ else 20), 2)])
        body = {"certificate_id": None}
        cert = (await client.get(f"/v1/certificates?covers=webmail.{middle}", headers=headers)).json()["items"][0]
        body["certificate_id"] = cert["id"]
        # Unbind then bind again: each is one transaction with the outbox write.
        samples = []
        for _ in range(10):
            t0 = time.perf_counter()
            await client.delete(f"/v1/domains/{middle}/bindings/webmail", headers=headers)
            r = await client.put(f"/v1/domains/{middle}/bindings/webmail", json=body, headers=headers)
            samples.append((time.perf_counter() - t0) / 2)
            assert r.status_code == 201, r.text  # bound again after the DELETE: created
        rows.append(["PUT or DELETE a binding (with generation bump)", round(statistics.median(samples) * 1000, 2)])
    async with ctx.sessionmaker() as session:
        server = await session.get(Server, server_id)
        t0 = time.perf_counter()
        desired = await load_desired(session, server)
        rows.append([f"load_desired() for {len(desired.mail)} mail + {len(desired.webmail)} webmail names",
                     round((time.perf_counter() - t0) * 1000, 2)])
    await ctx.close()
    if args.postgres:
        await drop_pg_database(name)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{count} domains on {backend}; seeding took {seeded:.1f} s (not timed below)\n")
    print(table(["request (median)", "ms"], rows))
    write_results(f"api-{backend.lower()}-{count}", {"machine": machine(), "domains": count, "backend": backend,
                                                     "rows": rows, "seed_seconds": seeded})


if __name__ == "__main__":
    asyncio.run(main())
