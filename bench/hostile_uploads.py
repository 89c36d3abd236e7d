"""/healthz while hostile uploads run: a real `certpost serve` subprocess on loopback.

    .venv/bin/python bench/hostile_uploads.py [--quick] [--seconds 30] [--uploaders 4]

Four clients upload at once, without pause, material that costs the most CPU certpost still
accepts (an RSA-8192 key: OpenSSL checks its primes) or that it must refuse cheaply (an RSA-16384
certificate, an encrypted key asking for 30 million PBKDF2 iterations, a PKCS#12 at and over the
iteration cap). Meanwhile one client asks for /healthz every 20 ms. Target: p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import REPO, table, write_results
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.support.pki import (
    CA,
    Issued,
    certificate_for_public_key,
    encrypted_key_pem_with_iterations,
    huge_rsa_public_key,
    write_pem,
)
from tests.support.ports import free_port

RSA_8192 = REPO / "tests" / "support" / "data" / "rsa8192-test-only.key.pem"


def payloads(ca: CA) -> dict[str, dict]:
    """name -> request kwargs (json or files) for POST /v1/certificates[/import]."""
    key = serialization.load_pem_private_key(RSA_8192.read_bytes(), None)
    big = Issued(certificate_for_public_key(ca, key.public_key(), ["mail.bench.test"]), key)
    huge_cert = certificate_for_public_key(ca, huge_rsa_public_key(16384), ["mail.bench.test"])
    small = ca.issue(["mail.bench.test"])
    at_cap = pkcs12.serialize_key_and_certificates(
        b"b", small.key, small.cert, None,
        serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(100_000).build(b"pw"))
    over_cap = pkcs12.serialize_key_and_certificates(
        b"b", small.key, small.cert, None,
        serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(150_000).build(b"pw"))
    return {
        "rsa-8192 PEM (accepted)": {"json": {"certificate_pem": big.cert_pem, "private_key_pem": big.key_pem}},
        "rsa-16384 cert + 30M-iteration key (refused)": {"json": {
            "certificate_pem": huge_cert.public_bytes(serialization.Encoding.PEM).decode(),
            "private_key_pem": encrypted_key_pem_with_iterations(30_000_000), "key_passphrase": "x"}},
        "PKCS#8 with 30M PBKDF2 iterations (refused)": {"json": {
            "certificate_pem": small.cert_pem, "private_key_pem": encrypted_key_pem_with_iterations(30_000_000),
            "key_passphrase": "x"}},
        "PKCS#12 at the 100k cap (accepted)": {"files": {"pkcs12": ("a.p12", at_cap, "application/x-pkcs12")},
                                               "data": {"password": "pw"}},
        "PKCS#12 over the cap (refused)": {"files": {"pkcs12": ("b.p12", over_cap, "application/x-pkcs12")},
                                           "data": {"password": "pw"}},
    }


def start_server(tmp: Path, ca: CA) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    env = {**os.environ, "CERTPOST_DATA_DIR": str(tmp / "data"),
           "CERTPOST_TRUST_BUNDLE": str(write_pem(tmp / "trust.pem", ca.cert_pem))}
    env.pop("CERTPOST_DATABASE_URL", None)
    # Output goes to files: a pipe nobody reads fills up (64 KiB of access log) and then blocks
    # the server's event loop on its next log line, which would be measured as a stall.
    out = tmp / "serve.out"
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "certpost"), "serve", "--port", str(port), "--no-worker"],
                            env=env, stdout=out.open("w"), stderr=(tmp / "serve.log").open("w"), cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                token = next(line.strip() for line in out.read_text().splitlines() if line.strip().startswith("cpt_"))
                return proc, base, token
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("certpost serve did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def probe(base: str, stop: asyncio.Event) -> list[float]:
    """/healthz every 20 ms; a probe that gets no answer in 10 s counts as 10 s."""
    samples = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                ok = (await client.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.append(time.perf_counter() - t0 if ok else 10.0)
            await asyncio.sleep(0.02)
    return samples


async def uploader(base: str, token: str, kinds: list[tuple[str, dict]], stop: asyncio.Event, log: list):
    async with httpx.AsyncClient(base_url=base, timeout=300, headers={"Authorization": f"Bearer {token}"}) as c:
        for name, kw in itertools.cycle(kinds):
            if stop.is_set():
                return
            url = "/v1/certificates/import" if "files" in kw else "/v1/certificates"
            t0 = time.perf_counter()
            try:
                r = await c.post(url, **kw)
                status, code = r.status_code, r.json().get("code")
            except httpx.HTTPError as exc:
                status, code = 0, type(exc).__name__
            log.append((name, status, code, time.perf_counter() - t0))


async def scenario(base: str, token: str, kinds, uploaders: int, seconds: float) -> dict:
    stop = asyncio.Event()
    log: list = []
    probe_task = asyncio.create_task(probe(base, stop))
    tasks = [asyncio.create_task(uploader(base, token, kinds[i % len(kinds):] + kinds[:i % len(kinds)], stop, log))
             for i in range(uploaders)]
    await asyncio.sleep(seconds)
    stop.set()
    samples = await probe_task
    await asyncio.gather(*tasks)
    return {"samples": samples, "log": log}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--uploaders", type=int, default=4)
    args = parser.parse_args()
    seconds = args.seconds or (15 if args.quick else 40)
    tmp = Path(tempfile.mkdtemp(prefix="certpost-bench-hostile-"))
    ca = CA.create("bench hostile root")
    kinds = list(payloads(ca).items())
    proc, base, token = start_server(tmp, ca)
    rows, details = [], {}
    try:
        # Warm up: the first upload starts the reader processes (about a second of CPU each).
        async with httpx.AsyncClient(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"}) as c:
            small = ca.issue(["warm.bench.test"])
            await asyncio.gather(*(c.post("/v1/certificates", json={"certificate_pem": small.cert_pem,
                                                                    "private_key_pem": small.key_pem})
                                   for _ in range(2)))
        idle = await scenario(base, token, [], 0, 5)
        rows.append(["idle (no uploads)", len(idle["samples"]), pct(idle["samples"], .5), pct(idle["samples"], .99),
                     max(idle["samples"]) * 1000, 0])
        for label, chosen in [("4 x RSA-8192 uploads, back to back", kinds[:1]), ("4 x mixed hostile uploads", kinds)]:
            run = await scenario(base, token, chosen, args.uploaders, seconds)
            s = run["samples"]
            rows.append([label, len(s), pct(s, .5), pct(s, .99), max(s) * 1000, len(run["log"])])
            per_kind = {}
            for name, status, code, took in run["log"]:
                per_kind.setdefault(name, []).append((status, code, took))
            details[label] = {k: {"count": len(v), "statuses": sorted({f"{st} {cd or ''}".strip() for st, cd, _ in v}),
                                  "median_s": round(statistics.median(t for _, _, t in v), 3)}
                              for k, v in per_kind.items()}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    print(f"\n/healthz against `certpost serve` (SQLite) while {args.uploaders} clients upload for {seconds:.0f} s\n")
    print(table(["scenario", "probes", "p50 ms", "p99 ms", "max ms", "uploads done"], rows))
    for label, per_kind in details.items():
        print(f"\n{label}:")
        print(table(["payload", "uploads", "answers", "median s"],
                    [[k, v["count"], ", ".join(v["statuses"]), v["median_s"]] for k, v in per_kind.items()]))
    path = write_results("hostile-uploads", {"seconds": seconds, "uploaders": args.uploaders, "rows": rows,
                                             "details": details})
    print(f"\nwritten {path}; server log: {tmp / 'serve.log'}")
    worst = max(r[3] for r in rows)
    sys.exit(0 if worst < 100 else 1)


if __name__ == "__main__":
    asyncio.run(main())
