"""HAProxy 2.6 alone with the agent's front files at N certificates: start, seamless reload, memory.

    .venv/bin/python bench/haproxy_alone.py [--quick] [--sizes 1000,10000,50000] [--binds 1,2]
                                            [--chains shared,inline]

The agent's layout (app/agent/backends/haproxy.py) without the agent or Dovecot: N EC P-256
bundles, the crt-list (default first, one line per name) and one frontend whose bind line(s)
load it; ``--binds 2`` writes one bind line per port instead of one line carrying both, to
show what sharing the list saves. ``--chains shared`` (the agent's layout) writes key + leaf
bundles and the intermediate once in ``issuers/`` for ``issuers-chain-path``
(app/agent/backends/haproxy_issuers.py); ``inline`` writes key + leaf + chain in every bundle,
as the agent did before. Measured: cold start (``haproxy -W -D`` until a handshake for a listed
name succeeds, verified against the root CA alone, so the served chain is complete), a reload
through the master CLI until a NEW worker serves, and the RSS of the master and the worker.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agentstack import Material, domain
from common import table, write_results

from app.agent.backends.haproxy_issuers import Issuers, split_leaf
from tests.support.ports import free_port

ROOT_CA: list[str] = []  # the bench root's PEM file, set per run


def served(port: int, sni: str) -> str:
    """The leaf's SHA-256, after verifying the chain against the root CA alone."""
    context = ssl.create_default_context(cafile=ROOT_CA[0])
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(
        raw, server_hostname=sni
    ) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def master(sock: Path, text: str) -> str:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(sock))
            s.sendall(text.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out.decode()
    except OSError:
        return ""


def workers(sock: Path) -> list[int]:
    pids, section = [], ""
    for line in master(sock, "show proc").splitlines():
        if line.startswith("#"):
            section = line
        elif section.startswith("# workers") and line.split()[1:2] == ["worker"]:
            pids.append(int(line.split()[0]))
    return pids


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def wait(predicate, timeout: float = 300) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if predicate():
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError


def measure(n: int, binds: int, chains: str) -> dict:
    d = Path(tempfile.mkdtemp(prefix="certpost-haproxy-alone-"))
    try:
        material = Material()
        (d / "root.pem").write_text(material.root.cert_pem)
        ROOT_CA[:] = [str(d / "root.pem")]
        issuers = Issuers(d / "issuers")
        (d / "issuers").mkdir()

        def bundle(c) -> bytes:  # what HaproxyBackend.bundle_bytes writes
            certs = (c.cert_pem + c.chain_pem).encode()
            leaf, chain = split_leaf(certs)
            if chains == "shared" and issuers.share(leaf, chain, 0o600, None):
                return c.key_pem.encode() + leaf
            return c.key_pem.encode() + certs

        default = material.issue(["mx1.host.test"])
        (d / "bundles").mkdir()
        lines = [f"{d}/default.pem certpost-default.invalid\n"]
        (d / "default.pem").write_bytes(bundle(default))
        names = {}
        for i in range(n):
            name = f"mail.{domain(i)}"
            c = material.issue([name])
            path = d / "bundles" / f"{c.fingerprint}.pem"
            path.write_bytes(bundle(c))
            lines.append(f"{path} {name}\n")
            names[name] = c.fingerprint
        (d / "certpost.crtlist").write_text("".join(lines))
        ports = [free_port(), free_port()]
        if binds == 1:
            bind = [f"    bind 127.0.0.1:{ports[0]},127.0.0.1:{ports[1]} ssl crt-list {d}/certpost.crtlist\n"]
        else:
            bind = [f"    bind 127.0.0.1:{p} ssl crt-list {d}/certpost.crtlist\n" for p in ports]
        (d / "haproxy.cfg").write_text(
            f"global\n    user haproxy\n    group haproxy\n    pidfile {d}/haproxy.pid\n"
            f"    stats socket {d}/admin.sock mode 600 level admin\n"
            + (f"    issuers-chain-path {d}/issuers\n" if chains == "shared" else "")
            + "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1m\n    timeout server 1m\n"
            "frontend certpost_tls\n" + "".join(bind) + "    default_backend b\nbackend b\n    server s 127.0.0.1:1\n"
        )
        sock = d / "master.sock"
        probe = f"mail.{domain(n // 2)}"
        started = time.perf_counter()
        subprocess.run(["haproxy", "-W", "-D", "-S", str(sock), "-f", str(d / "haproxy.cfg")], check=True)
        wait(lambda: served(ports[0], probe) == names[probe])
        row = {"domains": n, "bind_lines": binds, "chains": chains,
               "start_s": round(time.perf_counter() - started, 2)}
        before = []
        wait(lambda: bool(before.extend(workers(sock)) or before))
        row["master_rss_mb"] = rss_mb(int((d / "haproxy.pid").read_text().split()[0]))
        row["worker_rss_mb"] = rss_mb(before[0])
        started = time.perf_counter()
        master(sock, "reload")
        wait(lambda: (now := workers(sock)) and not set(now) & set(before))
        wait(lambda: served(ports[1], probe) == names[probe])
        row["reload_s"] = round(time.perf_counter() - started, 2)
        row["worker_rss_after_reload_mb"] = rss_mb(workers(sock)[0])
        row["worker_kb_per_domain"] = round(row["worker_rss_after_reload_mb"] * 1024 / n, 1)
        print(row, flush=True)
        return row
    finally:
        pid = d / "haproxy.pid"
        if pid.exists():
            os.kill(int(pid.read_text().split()[0]), 15)
            time.sleep(1)
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="")
    parser.add_argument("--binds", default="1")
    parser.add_argument("--chains", default="shared")
    args = parser.parse_args()
    sizes = args.sizes or ("200,1000" if args.quick else "1000,10000,50000")
    rows = [
        measure(int(n), int(b), c)
        for n in sizes.split(",") for b in args.binds.split(",") for c in args.chains.split(",")
    ]
    columns = ["domains", "bind_lines", "chains", "start_s", "reload_s", "master_rss_mb", "worker_rss_mb",
               "worker_rss_after_reload_mb", "worker_kb_per_domain"]
    print(table(columns, [[r.get(c) for c in columns] for r in rows]))
    write_results("haproxy_alone", {"rows": rows})


if __name__ == "__main__":
    main()
