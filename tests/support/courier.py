"""A private Courier-IMAP 5 (Debian ``courier-imap``) on 127.0.0.1: IMAP STARTTLS and IMAPS.

Instead of Debian's start scripts (which read /etc/courier and daemonize through courierlogger),
the two ``couriertcpd`` listeners run in the foreground as our own subprocesses, with the
environment those scripts would build from the ``imapd``/``imapd-ssl`` files, so they are
stopped by PID:

    imaps:  couriertcpd -address=127.0.0.1 PORT couriertls -server -tcpd imaplogin imapd Maildir
    imap:   couriertcpd -address=127.0.0.1 PORT imaplogin imapd Maildir   (STARTTLS: IMAP_STARTTLS=YES)

imaplogin drops to the ``courier`` user before it runs couriertls for STARTTLS, so the
certificate files must be readable by group ``courier`` (the agent's default bundle_group).
Authentication is not configured: the tests only make TLS handshakes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemons import _kill_pid, wait_for_port
from tests.support.ports import free_port

# Debian's courier-imap conflicts with dovecot-imapd (both provide and conflict with
# imap-server), so scripts/install-test-deps.sh unpacks it here instead of installing it; the
# couriertcpd and couriertls it runs come from courier-base, which installs normally.
PRIVATE = Path("/opt/certpost-courier-imap")


def _binary(path: str) -> str:
    return path if Path(path).exists() else str(PRIVATE / path.lstrip("/"))


IMAPLOGIN = _binary("/usr/lib/courier/courier/imaplogin")
IMAPD = _binary("/usr/bin/imapd")


def courier_available() -> bool:
    return bool(shutil.which("couriertcpd") and shutil.which("couriertls")) and all(
        Path(p).exists() for p in (IMAPLOGIN, IMAPD)
    )


@dataclass
class Courier:
    root: Path
    certfile: Path  # TLS_CERTFILE; per-name files are TLS_CERTFILE.<name> beside it
    ports: dict[str, int] = field(default_factory=dict)  # "imap" (STARTTLS), "imaps"
    processes: list[subprocess.Popen] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        """What /etc/courier/imapd and imapd-ssl would set (only what a handshake needs)."""
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "TLS_CERTFILE": str(self.certfile),
            "TLS_VERIFYPEER": "NONE",
            "COURIERTLS": shutil.which("couriertls") or "/usr/bin/couriertls",
            "IMAP_STARTTLS": "YES",
            "IMAP_TLS_REQUIRED": "0",
            "IMAP_CAPABILITY": "IMAP4rev1 IDLE",
            "IMAP_CAPABILITY_TLS": "IMAP4rev1 IDLE AUTH=PLAIN",
            "MAILDIRPATH": "Maildir",
        }
        if Path("/etc/courier/dhparams.pem").exists():
            env["TLS_DHPARAMS"] = "/etc/courier/dhparams.pem"
        return env


def make_courier(root: Path, certfile: Path) -> Courier:
    root.mkdir(parents=True, exist_ok=True)
    return Courier(root, certfile, {"imap": free_port(), "imaps": free_port()})


def start_courier(courier: Courier) -> None:
    tcpd = ["couriertcpd", "-address=127.0.0.1", "-maxprocs=40", "-maxperip=20"]
    tcpd += [
        "-nodnslookup",
        "-noidentlookup",
    ]  # as Debian's imapd file; the built-in -maxperip is 4
    imap = [IMAPLOGIN, IMAPD, "Maildir"]
    commands = {
        "imaps": [
            *tcpd,
            str(courier.ports["imaps"]),
            courier.environment()["COURIERTLS"],
            "-server",
            "-tcpd",
            *imap,
        ],
        "imap": [*tcpd, str(courier.ports["imap"]), *imap],
    }
    for name, argv in commands.items():
        env = courier.environment()
        if name == "imaps":
            env["IMAP_TLS"] = "1"
        with open(courier.root / f"courier-{name}.log", "ab") as log:
            courier.processes.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    cwd=courier.root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            )
    try:
        for port in courier.ports.values():
            wait_for_port(port)
    except Exception:
        stop_courier(courier)
        raise


def stop_courier(courier: Courier) -> None:
    """Stop our two couriertcpd processes by PID (their connection children exit with them)."""
    for process in courier.processes:
        _kill_pid(process.pid)
        process.wait(timeout=10)
    courier.processes.clear()
