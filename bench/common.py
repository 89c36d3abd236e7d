"""Shared helpers for the benchmarks in bench/ (not tests: nothing here asserts).

Every benchmark prints a table and writes ``bench/results/<name>.json`` (gitignored).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    return info


def versions() -> dict:
    """Versions of the daemons and tools involved (best effort)."""
    out = {}
    for name, argv in {
        "postfix": ["postconf", "-d", "-h", "mail_version"],
        "dovecot": ["dovecot", "--version"],
        "nginx": ["nginx", "-v"],
        "pebble": ["dpkg-query", "-W", "-f", "${Version}", "pebble"],
        "bind9": ["dpkg-query", "-W", "-f", "${Version}", "bind9"],
    }.items():
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            out[name] = (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else "?"
        except (OSError, subprocess.SubprocessError):
            out[name] = "?"
    return out


def write_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        **data,
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table (readable in a terminal, pasteable into docs)."""
    cells = [[str(c) for c in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}" if value < 1 else f"{value:.2f}"
    return str(value)


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed_run(argv: list[str], *, stdout=subprocess.DEVNULL, umask: int | None = None,
              timeout: float = 600) -> tuple[float, int, str]:
    """Run argv; returns (seconds, exit status, stderr tail)."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    started = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                       timeout=timeout, preexec_fn=preexec, check=False)
    return time.perf_counter() - started, r.returncode, r.stderr.decode(errors="replace")[-500:]


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the live processes `pids` have used so far (from /proc)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def pids_of_children(root_pid: int) -> list[int]:
    """root_pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def which(name: str) -> str | None:
    return shutil.which(name)


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"  # the local server: trust auth, as in the tests


async def create_pg_database(prefix: str, template: str | None = None) -> tuple[str, str]:
    """A fresh PostgreSQL database on the local server: (SQLAlchemy URL, its name). Empty, or a
    copy of ``template`` (CREATE DATABASE … TEMPLATE: a file copy, seconds for a seeded 10,000)."""
    import uuid

    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name


async def pg_database_exists(name: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def drop_pg_database(name: str | None) -> None:
    """Drop what ``create_pg_database`` made (connections still open are ended)."""
    if not name:
        return
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def process_memory(pid: int) -> dict:
    """VmHWM (peak) and VmRSS of a process, in MB, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out
