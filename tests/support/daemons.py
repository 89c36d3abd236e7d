"""Private Postfix, Dovecot and nginx instances on 127.0.0.1, plus the certpost agent for them.

Recipes from the project guide (real-servers.md). Everything lives in one temporary directory,
listens on free high ports and is stopped by PID by whoever started it. Plain functions, so
that pytest fixtures (tests/agent/conftest.py) and the controller's end-to-end tests share them:

    stack = write_stack(make_root(), controller_public_key=public_key_to_text(key.public_key()))
    agent = AgentProcess(stack); agent.start()   # `certpost agent --config FILE`: it writes its
                                                 # first (self-signed) files, then serves HTTPS
                                                 # on stack.agent_url; agent.fingerprint
    start_daemons(stack)            # Postfix, Dovecot, nginx serve those files
    ...
    agent.stop(); stop_daemons(stack)

or simply ``with running_stack(public_key_text) as (stack, agent): ...``.

The daemons run as Debian runs them (real-servers.md): nginx's master as root with
``user www-data;`` workers, Dovecot with its packaged ``default_login_user = dovenull`` and
``default_internal_user = dovecot``, Postfix with ``mail_owner = postfix``. So a test sees the
permissions a real server has: a key the agent leaves unreadable to www-data fails every
webmail handshake here too.

The agent is always the installed console script, run as an operator types it
(:func:`certpost_command`), never an internal function.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.agent.backends.postfix import sni_maps_value
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def certpost_command() -> str:
    """The ``certpost`` console script ``pip install -e .`` put next to this Python."""
    script = Path(sys.executable).with_name("certpost")
    if not script.exists():
        raise RuntimeError(f"{script} is missing: run `make test-deps` (pip install -e .)")
    return str(script)
PORT_NAMES = ("smtp", "smtps", "imap", "imaps", "pop3", "pop3s", "https", "http", "agent")
PROTOCOL_OF = {
    "smtp": "smtp-starttls",
    "smtps": "smtps",
    "imap": "imap-starttls",
    "imaps": "imaps",
    "pop3": "pop3-starttls",
    "pop3s": "pop3s",
    "https": "https",
}


@dataclass
class Stack:
    """Paths and ports of one private mail server with its agent."""

    root: Path
    hostname: str
    controller_public_key: str
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def agent_config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def agent_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['agent']}"

    @property
    def state_dir(self) -> Path:
        return self.root / "agent-state"

    def out(self, daemon: str) -> Path:
        """The directory the agent writes a daemon's files into."""
        return self.root / "agent-out" / daemon

    @property
    def postfix_dir(self) -> Path:
        return self.root / "postfix"

    @property
    def dovecot_conf(self) -> Path:
        return self.root / "dovecot" / "dovecot.conf"

    @property
    def nginx_dir(self) -> Path:
        return self.root / "nginx"

    def mail_ports(self) -> list[tuple[int, str]]:
        return [
            (self.ports[n], PROTOCOL_OF[n])
            for n in ("smtp", "smtps", "imap", "imaps", "pop3", "pop3s")
        ]


# -- configuration files -----------------------------------------------------------------------


def _master_cf(stack: Stack) -> str:
    """Debian's master.cf with chroot off, and smtpd on our two loopback ports only."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if line[:1] in ("#", " ", "\t") or len(fields) < 8:
            if not line.startswith((" ", "\t")):
                lines.append(line)
            continue
        if fields[0] in ("smtp", "submission", "submissions", "smtps") and fields[1] == "inet":
            continue
        fields[4] = "n"
        lines.append("  ".join(fields))
    lines.append(f"127.0.0.1:{stack.ports['smtp']} inet n - n - - smtpd")
    lines.append(
        f"127.0.0.1:{stack.ports['smtps']} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes"
    )
    return "\n".join(lines) + "\n"


def _write_postfix(stack: Stack) -> None:
    d = stack.postfix_dir
    for sub in ("etc", "spool", "data"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    shutil.chown(d / "data", "postfix", "postfix")
    out = stack.out("postfix")
    map_type = "lmdb" if Path("/usr/lib/postfix/postfix-lmdb.so").exists() else "hash"
    (d / "etc" / "main.cf").write_text(f"""\
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {stack.hostname}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_chain_files = {out}/default.pem
tls_server_sni_maps = {sni_maps_value(out, map_type)}
""")
    (d / "etc" / "master.cf").write_text(_master_cf(stack))


def _write_dovecot(stack: Stack) -> None:
    d = stack.dovecot_conf.parent
    for sub in ("run", "state", "mail"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    p = stack.ports
    stack.dovecot_conf.write_text(f"""\
base_dir = {d}/run
default_login_user = dovenull
default_internal_user = dovecot
state_dir = {d}/state
log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = imap pop3
ssl = yes
ssl_dh = </usr/share/dovecot/dh.pem
auth_mechanisms = plain
passdb {{
  driver = static
  args = password=test
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {p["imap"]}
  }}
  inet_listener imaps {{
    port = {p["imaps"]}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {p["pop3"]}
  }}
  inet_listener pop3s {{
    port = {p["pop3s"]}
    ssl = yes
  }}
}}
service config {{
  vsz_limit = 2G
}}
!include {stack.out("dovecot")}/certpost.conf
""")


def _nginx_flags(stack: Stack) -> list[str]:
    d = stack.nginx_dir
    return ["-e", str(d / "error.log"), "-p", f"{d}/"]


def _write_nginx(stack: Stack) -> None:
    d = stack.nginx_dir
    d.mkdir(parents=True, exist_ok=True)
    (d / "nginx.conf").write_text(f"""\
user www-data;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    include {stack.out("nginx")}/certpost.conf;
}}
""")


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def write_agent_config(
    stack: Stack, *, postfix_bundle_cert_first: bool = False, verify_timeout: float = 4,
    drift_interval: float = 0, nginx_bundle_key_only: bool = False,
) -> Path:
    """The agent's TOML for this stack (see docs/agent.md for every key). Drift rounds are off
    unless ``drift_interval`` is given (tests/e2e/test_drift.py): elsewhere their handshakes
    would only add noise to the daemons' logs."""
    p = stack.ports
    nginx = ["nginx", *_nginx_flags(stack)]
    text = f"""\
[listen]
host = "127.0.0.1"
port = {p["agent"]}

[agent]
state_dir = "{stack.state_dir}"
controller_public_key = "{stack.controller_public_key}"
hostname = "{stack.hostname}"
verify_timeout = {verify_timeout}
drift_interval = {drift_interval}

[postfix]
directory = "{stack.out("postfix")}"
config_directory = "{stack.postfix_dir}/etc"
log_file = "{stack.postfix_dir}/postfix.log"
reload = ["postfix", "-c", "{stack.postfix_dir}/etc", "reload"]
verify = [{{port = {p["smtp"]}, protocol = "smtp-starttls"}}, {{port = {p["smtps"]}, protocol = "smtps"}}]

[dovecot]
directory = "{stack.out("dovecot")}"
main_config = "{stack.dovecot_conf}"
log_file = "{stack.dovecot_conf.parent}/dovecot.log"
reload = ["doveadm", "-c", "{stack.dovecot_conf}", "reload"]
verify = [
  {{port = {p["imap"]}, protocol = "imap-starttls"}}, {{port = {p["imaps"]}, protocol = "imaps"}},
  {{port = {p["pop3"]}, protocol = "pop3-starttls"}}, {{port = {p["pop3s"]}, protocol = "pop3s"}},
]

[nginx]
directory = "{stack.out("nginx")}"
main_config = "{stack.nginx_dir}/nginx.conf"
log_file = "{stack.nginx_dir}/error.log"
validate = {_toml_list([*nginx, "-t", "-q", "-c", "{config}"])}
reload = {_toml_list([*nginx, "-c", str(stack.nginx_dir / "nginx.conf"), "-s", "reload"])}
listen = ["127.0.0.1:{p["https"]}"]
http_listen = "127.0.0.1:{p["http"]}"
verify = [{{port = {p["https"]}, protocol = "https"}}]

[testing]
postfix_bundle_cert_first = {str(postfix_bundle_cert_first).lower()}
nginx_bundle_key_only = {str(nginx_bundle_key_only).lower()}
"""
    stack.agent_config.write_text(text)
    return stack.agent_config


def make_root(prefix: str = "certpost-stack-") -> Path:
    """A fresh directory under the system temp dir that the postfix user can traverse."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o711)
    return root


def write_stack(
    root: Path,
    *,
    controller_public_key: str,
    hostname: str = "mx1.host.test",
    http_port: int | None = None,
    drift_interval: float = 0,
) -> Stack:
    """Write every daemon's configuration and the agent's, with fresh free ports.

    ``http_port`` is where nginx answers HTTP-01 challenges on 127.0.0.1 (``stack.ports["http"]``,
    the agent's ``[nginx] http_listen``); pass Pebble's ``httpPort`` there. Default: a free port.

    Postfix opens ``data_directory`` as user postfix, so every directory above ``root`` must be
    searchable by others: pytest's own temporary directories (0700) are not; use
    :func:`make_root`.
    """
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)
    for parent in root.parents:
        if not os.stat(parent).st_mode & 0o001:
            raise RuntimeError(f"{parent} is not searchable by the postfix user; use make_root()")
    stack = Stack(root=root, hostname=hostname, controller_public_key=controller_public_key)
    stack.ports = {name: free_port() for name in PORT_NAMES}
    if http_port is not None:
        stack.ports["http"] = http_port
    _write_postfix(stack)
    _write_dovecot(stack)
    _write_nginx(stack)
    write_agent_config(stack, drift_interval=drift_interval)
    return stack


# -- processes -----------------------------------------------------------------------------------


def _run(argv: list[str], log: Path, timeout: float = 60) -> None:
    """Run a daemon's start command. Its output goes to a file, not a pipe: a daemon that
    forks keeps the pipe open and ``communicate`` would wait for it forever. ``timeout``: how
    long the command may take to return (HAProxy's master loads every certificate before it
    daemonises: minutes at 50,000)."""
    with open(log, "a+b") as out:
        start = out.tell()
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=timeout, check=False
        )
        out.seek(start)
        output = out.read().decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {output}")


def wait_for_port(port: int, timeout: float = 15, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _kill_pid(pid: int | None, timeout: float = 10) -> None:
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_postfix(stack: Stack) -> None:
    try:
        _run(["postfix", "-c", str(stack.postfix_dir / "etc"), "start"], stack.root / "start.log")
    except RuntimeError as exc:  # postfix start says nothing; why is in its maillog_file
        log = stack.postfix_dir / "postfix.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no postfix.log)"
        raise RuntimeError(f"{exc}\npostfix.log:\n{tail}") from None
    wait_for_port(stack.ports["smtp"])
    wait_for_port(stack.ports["smtps"])


def stop_postfix(stack: Stack) -> None:
    pid = _pid_from(stack.postfix_dir / "spool" / "pid" / "master.pid")
    subprocess.run(
        ["postfix", "-c", str(stack.postfix_dir / "etc"), "stop"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    _kill_pid(pid)


def start_dovecot(stack: Stack) -> None:
    _run(["dovecot", "-c", str(stack.dovecot_conf)], stack.root / "start.log")
    for name in ("imap", "imaps", "pop3", "pop3s"):
        wait_for_port(stack.ports[name])


def stop_dovecot(stack: Stack) -> None:
    _kill_pid(_pid_from(stack.dovecot_conf.parent / "run" / "master.pid"))


def start_nginx(stack: Stack) -> None:
    _run(
        ["nginx", *_nginx_flags(stack), "-c", str(stack.nginx_dir / "nginx.conf")],
        stack.root / "start.log",
    )
    wait_for_port(stack.ports["https"])
    wait_for_port(stack.ports["http"])


def stop_nginx(stack: Stack) -> None:
    _kill_pid(_pid_from(stack.nginx_dir / "nginx.pid"))


def start_daemons(stack: Stack) -> None:
    start_postfix(stack)
    start_dovecot(stack)
    start_nginx(stack)


def stop_daemons(stack: Stack) -> None:
    for stop in (stop_nginx, stop_dovecot, stop_postfix):
        with contextlib.suppress(Exception):
            stop(stack)


def bootstrap_agent(stack: Stack) -> str:
    """``certpost agent --config FILE --prepare-only``: the agent's TLS identity and its bootstrap
    files (a self-signed bundle for the server's host name), so the daemons can start before the
    agent serves; returns the agent's TLS fingerprint."""
    out = subprocess.run(
        [certpost_command(), "agent", "--config", str(stack.agent_config), "--prepare-only"],
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"agent bootstrap failed: {out.stderr}")
    line = out.stdout.strip().splitlines()[-1]
    return line.removeprefix("agent TLS fingerprint:").strip()


class AgentProcess:
    """``certpost agent --config FILE`` as a subprocess, so tests can stop and restart it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.process: subprocess.Popen | None = None
        self.fingerprint: str | None = None
        self.log = stack.root / "agent.log"

    def start(self, timeout: float = 20) -> str:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [certpost_command(), "agent", "--config", str(self.stack.agent_config)],
                cwd=self.stack.root,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        line = self.process.stdout.readline().decode()
        if not line.startswith("agent TLS fingerprint:"):
            self.stop()
            raise RuntimeError(f"the agent did not start: {line!r}; see {self.log}")
        self.fingerprint = line.split(":", 1)[1].strip()
        wait_for_port(self.stack.ports["agent"], timeout)
        return self.fingerprint

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()
        self.process = None

    def kill(self) -> None:
        """Simulate a crash: SIGKILL, no graceful shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.stop()

    def restart(self) -> str:
        self.stop()
        return self.start()


@contextlib.contextmanager
def running_stack(
    controller_public_key: str,
    *,
    root: Path | None = None,
    hostname: str = "mx1.host.test",
    http_port: int | None = None,
    keep: bool = False,
    drift_interval: float = 0,
):
    """Daemons and agent up for the duration of the block; yields (stack, agent).

    ``http_port``: where nginx serves HTTP-01 answers (see :func:`write_stack`).

    ``root`` defaults to a fresh :func:`make_root` directory, removed afterwards unless ``keep``.
    """
    made = root is None
    root = root or make_root()
    stack = write_stack(
        root, controller_public_key=controller_public_key, hostname=hostname, http_port=http_port,
        drift_interval=drift_interval,
    )
    agent = AgentProcess(stack)
    try:
        agent.start()  # writes the bootstrap files the daemons need before it serves
        start_daemons(stack)
        yield stack, agent
    finally:
        agent.stop()
        stop_daemons(stack)
        if made and not keep:
            shutil.rmtree(root, ignore_errors=True)


def bare_stack(root: Path, controller_public_key: str, **listen) -> Stack:
    """An agent configuration with no daemon at all (just its HTTPS API), for tests of the
    command and of the request limits. ``listen`` adds ``[listen]`` keys (e.g. body_timeout)."""
    root.mkdir(parents=True, exist_ok=True)
    stack = Stack(root=root, hostname="mx1.host.test", controller_public_key=controller_public_key)
    stack.ports = {"agent": free_port()}
    extra = "".join(f"{key} = {value!r}\n" for key, value in listen.items())
    stack.agent_config.write_text(f"""\
[listen]
host = "127.0.0.1"
port = {stack.ports["agent"]}
{extra}
[agent]
state_dir = "{stack.state_dir}"
controller_public_key = "{controller_public_key}"
hostname = "{stack.hostname}"
""")
    return stack
