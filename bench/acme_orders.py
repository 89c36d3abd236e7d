"""ACME issuance time: certpost's API + worker vs certbot, against a private Pebble and BIND.

    .venv/bin/python bench/acme_orders.py [--quick] [--count 20] [--no-certbot]

certpost: the real application in-process (SQLite file, Alembic migrations, the public API over
httpx's ASGI transport, the real worker driven with ``round()``/``drain()``); a wildcard order
``<d>`` + ``*.<d>`` over dns-01 with an rfc2136 DNS provider pointing at BIND. Timed from
POST /v1/certificate-orders until GET shows ``valid`` (plus the order's own ``duration_ms``):
one order on a fresh ACME account (includes registration), one more on the warm account, then
``--count`` orders posted at once.

certbot: ``certbot certonly --dns-rfc2136`` with the same names against the same Pebble,
``--dns-rfc2136-propagation-seconds 1``: one (first run registers an account), one more, then the
same ``--count`` domains one after another, as a certbot user would script it. certbot is
installed into its own venv, /tmp/certbot-venv, when missing (never into the project venv).

Pebble runs with PEBBLE_VA_NOSLEEP=1 and PEBBLE_AUTHZREUSE=0 (tests/support/pebble.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, median, pids_of_children, table, write_results

CERTBOT_VENV = Path("/tmp/certbot-venv")
DEFAULT_SETTINGS = False  # --default-settings: certpost's own poll/propagation intervals, not the tests' 0.1 s
CERTBOT = CERTBOT_VENV / "bin" / "certbot"


def ensure_certbot() -> Path:
    if not CERTBOT.exists():
        print("installing certbot + certbot-dns-rfc2136 into /tmp/certbot-venv ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(CERTBOT_VENV)], check=True)
        subprocess.run([str(CERTBOT_VENV / "bin" / "pip"), "install", "-q",
                        "certbot", "certbot-dns-rfc2136"], check=True)
    return CERTBOT


def _in_thread(fn, *args):
    """Alembic's env calls asyncio.run: keep it off any running loop."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("v", fn(*args)))
    t.start()
    t.join()
    return box.get("v")


# -- certpost ------------------------------------------------------------------------------------


async def certpost_run(pebble, bind, tmp: Path, zones_single: list[str], zones_batch: list[str]) -> dict:
    import httpx

    from app.accounts.caller import OPERATOR
    from app.accounts.repository import AccountRepository
    from app.accounts.service import AccountService
    from app.config import Settings
    from app.context import AppContext
    from app.main import create_app
    from app.scheduler.worker import Worker

    url = f"sqlite+aiosqlite:///{tmp / 'certpost.db'}"
    intervals = {} if DEFAULT_SETTINGS else {"acme_propagation_interval": 0.1, "acme_poll_interval": 0.1}
    settings = Settings(data_dir=tmp, database_url=url, acme_directory_url=pebble.directory_url,
                        acme_ca_bundle=pebble.ca_bundle, acme_propagation_timeout=10.0, run_worker=False,
                        **intervals)
    ctx = AppContext.build(settings)
    app = create_app(context=ctx, run_worker=False)
    app.state.ctx = ctx
    worker = Worker(ctx, owner="bench-worker")
    out: dict = {}
    try:
        async with ctx.sessionmaker() as session:
            _row, admin_token = await AccountService(AccountRepository(session)).create_token("admin", None, caller=OPERATOR)
            await session.commit()
        admin = {"Authorization": f"Bearer {admin_token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://certpost.test", timeout=60) as api:
            r = await api.post("/v1/accounts", json={"name": "bench"}, headers=admin)
            r.raise_for_status()
            account_id = r.json()["id"]
            async with ctx.sessionmaker() as session:
                _row, token = await AccountService(AccountRepository(session)).create_token("customer", account_id, caller=OPERATOR)
                await session.commit()
            customer = {"Authorization": f"Bearer {token}"}
            r = await api.post("/v1/servers", json={"name": "mx1", "hostname": "mx1.hosting.test",
                                                    "software": "postfix-dovecot"}, headers=admin)
            r.raise_for_status()
            server_id = r.json()["id"]
            for zone in [*zones_single, *zones_batch]:
                r = await api.post("/v1/domains", json={"name": zone, "server_id": server_id,
                                                        "account_id": account_id}, headers=admin)
                r.raise_for_status()
            r = await api.post("/v1/dns-providers", json={"name": "bind", "kind": "rfc2136", "settings": {
                "server": bind.host, "port": bind.port, "key_name": bind.key_name,
                "key_algorithm": bind.key_algorithm, "key_secret": bind.key_secret}}, headers=admin)
            r.raise_for_status()
            provider_id = r.json()["id"]

            async def post(zone: str) -> str:
                r = await api.post("/v1/certificate-orders", json={
                    "domain": zone, "wildcard": True, "challenge": "dns-01",
                    "dns_provider_id": provider_id}, headers=customer)
                if r.status_code != 202:
                    raise RuntimeError(r.text)
                return r.json()["id"]

            async def until_done(ids: list[str], timeout: float = 300) -> tuple[float, list[dict]]:
                started = time.perf_counter()
                done: dict[str, dict] = {}
                while len(done) < len(ids):
                    await worker.round()
                    await worker.drain()
                    for oid in ids:
                        if oid not in done:
                            body = (await api.get(f"/v1/certificate-orders/{oid}", headers=customer)).json()
                            if body["status"] in ("valid", "invalid"):
                                done[oid] = body
                    if time.perf_counter() - started > timeout:
                        raise TimeoutError(f"orders not done after {timeout} s")
                    if len(done) < len(ids):
                        await asyncio.sleep(0.02)
                return time.perf_counter() - started, [done[i] for i in ids]

            for label, zone in zip(("single_cold", "single_warm"), zones_single):
                t0 = time.perf_counter()
                oid = await post(zone)
                _w, (order,) = await until_done([oid])
                wall = time.perf_counter() - t0
                out[label] = {"zone": zone, "wall_s": round(wall, 3), "status": order["status"],
                              "duration_ms": order["duration_ms"], "error": order["error"]}
                print(f"   certpost {label} {zone}: {order['status']} {wall:.2f} s "
                      f"(order duration {order['duration_ms']} ms)", flush=True)
            if zones_batch:
                def cpu() -> dict:
                    others = {*pids_of_children(pebble.pid), *pids_of_children(bind.pid)}  # our children too
                    mine = [p for p in pids_of_children(os.getpid()) if p not in others]
                    return {"certpost": cpu_seconds(mine),
                            "pebble": cpu_seconds([pebble.pid]), "bind": cpu_seconds([bind.pid])}

                load = os.getloadavg()[0]
                cpu0 = cpu()
                t0 = time.perf_counter()
                ids = [await post(z) for z in zones_batch]
                posted = time.perf_counter() - t0
                _w, orders = await until_done(ids)
                wall = time.perf_counter() - t0
                used = {k: round(v - cpu0[k], 2) for k, v in cpu().items()}
                durations = [o["duration_ms"] or 0 for o in orders]
                out["batch"] = {"count": len(ids), "wall_s": round(wall, 3), "posted_s": round(posted, 3),
                                "valid": sum(o["status"] == "valid" for o in orders),
                                "median_duration_ms": median(durations), "max_duration_ms": max(durations),
                                "cpu_s": used, "cpu_total_s": round(sum(used.values()), 2),
                                "loadavg_1m_before": load, "loadavg_1m_after": os.getloadavg()[0],
                                "errors": [o["error"] for o in orders if o["status"] != "valid"]}
                print(f"   certpost {len(ids)} at once: {out['batch']['valid']} valid, wall {wall:.2f} s (the {len(ids)} POSTs {posted:.2f} s); "
                      f"CPU s during the batch {used} (total {sum(used.values()):.2f} on {os.cpu_count()} cores); "
                      f"load {load:.1f}", flush=True)
    finally:
        await ctx.close()
    return out


# -- certbot -------------------------------------------------------------------------------------


def certbot_run(pebble, bind, tmp: Path, zones_single: list[str], zones_batch: list[str]) -> dict:
    ini = tmp / "rfc2136.ini"
    ini.write_text(
        f"dns_rfc2136_server = {bind.host}\n"
        f"dns_rfc2136_port = {bind.port}\n"
        f"dns_rfc2136_name = {bind.key_name}\n"
        f"dns_rfc2136_secret = {bind.key_secret}\n"
        f"dns_rfc2136_algorithm = {bind.key_algorithm.upper()}\n"
    )
    os.chmod(ini, 0o600)
    env = {**os.environ, "REQUESTS_CA_BUNDLE": pebble.ca_bundle}
    dirs = ["--config-dir", str(tmp / "config"), "--work-dir", str(tmp / "work"),
            "--logs-dir", str(tmp / "logs")]

    def one(zone: str) -> tuple[float, int, str]:
        argv = [str(CERTBOT), "certonly", "--non-interactive", "--agree-tos",
                "--register-unsafely-without-email", "--server", pebble.directory_url,
                "--dns-rfc2136", "--dns-rfc2136-credentials", str(ini),
                "--dns-rfc2136-propagation-seconds", "1", "-d", zone, "-d", f"*.{zone}",
                "--cert-name", zone, *dirs]
        t0 = time.perf_counter()
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
        return time.perf_counter() - t0, r.returncode, (r.stdout + r.stderr)[-800:]

    out: dict = {}
    for label, zone in zip(("single_cold", "single_warm"), zones_single):
        t, rc, text = one(zone)
        out[label] = {"zone": zone, "wall_s": round(t, 3), "rc": rc}
        if rc:
            out[label]["output"] = text
        print(f"   certbot {label} {zone}: rc={rc} {t:.2f} s", flush=True)
    if zones_batch:
        t0 = time.perf_counter()
        each = []
        for zone in zones_batch:
            t, rc, text = one(zone)
            each.append({"zone": zone, "wall_s": round(t, 3), "rc": rc, **({"output": text} if rc else {})})
        wall = time.perf_counter() - t0
        out["batch"] = {"count": len(zones_batch), "wall_s": round(wall, 3),
                        "valid": sum(e["rc"] == 0 for e in each),
                        "median_s": median([e["wall_s"] for e in each]), "runs": each}
        print(f"   certbot {len(zones_batch)} one after another: {out['batch']['valid']} ok, "
              f"wall {wall:.2f} s", flush=True)
    return out


def report(res: dict) -> str:
    cp, cb = res.get("certpost", {}), res.get("certbot", {})
    rows = []
    for label, name in (("single_cold", "one wildcard, first order (account registration)"),
                        ("single_warm", "one wildcard, warm account")):
        a, b = cp.get(label, {}), cb.get(label, {})
        rows.append([name, a.get("wall_s"), a.get("duration_ms"), b.get("wall_s")])
    if "batch" in cp or "batch" in cb:
        a, b = cp.get("batch", {}), cb.get("batch", {})
        n = a.get("count") or b.get("count")
        rows.append([f"{n} wildcards (certpost: at once; certbot: one after another)",
                     a.get("wall_s"), a.get("median_duration_ms"), b.get("wall_s")])
        rows.append([f"  valid / {n}", a.get("valid"), None, b.get("valid")])
    return table(["case", "certpost wall s", "certpost order duration_ms (median)", "certbot wall s"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 domains in the batch instead of 20")
    parser.add_argument("--count", type=int, help="batch size (default 20; at most 21)")
    parser.add_argument("--no-certbot", action="store_true")
    parser.add_argument("--default-settings", action="store_true",
                        help="certpost's default acme_poll_interval/acme_propagation_interval instead of 0.1 s")
    args = parser.parse_args()
    global DEFAULT_SETTINGS
    DEFAULT_SETTINGS = args.default_settings
    count = args.count or (5 if args.quick else 20)
    count = min(count, 21)
    zones = [f"z{i:02d}.test" for i in range(1, 26)]
    zones_single, zones_batch = [zones[0], zones[24]], zones[1:1 + count]

    from tests.support.bind import start_bind, stop_bind
    from tests.support.pebble import start_pebble, stop_pebble

    results: dict = {"quick": args.quick, "count": count, "default_settings": args.default_settings}
    bind = start_bind()
    try:
        for tool in ("certpost", "certbot"):
            if tool == "certbot" and args.no_certbot:
                continue
            # A fresh Pebble per tool: neither sees the other's authorizations or load.
            pebble = start_pebble(bind.address)
            try:
                with tempfile.TemporaryDirectory(prefix=f"certpost-bench-{tool}-") as d:
                    tmp = Path(d)
                    print(f"\n== {tool}", flush=True)
                    if tool == "certpost":
                        from app.migrate import upgrade

                        _in_thread(upgrade, f"sqlite+aiosqlite:///{tmp / 'certpost.db'}")
                        results[tool] = asyncio.run(certpost_run(pebble, bind, tmp, zones_single, zones_batch))
                    else:
                        ensure_certbot()
                        results[tool] = certbot_run(pebble, bind, tmp, zones_single, zones_batch)
                        version = subprocess.run([str(CERTBOT), "--version"], capture_output=True, text=True, check=False)
                        results["certbot_version"] = (version.stdout + version.stderr).strip()
            finally:
                stop_pebble(pebble)
            write_results("acme_orders", results)
    finally:
        stop_bind(bind)
    print("\n" + report(results))
    print(f"\nresults: {write_results('acme_orders', results)}")


if __name__ == "__main__":
    main()
