"""A private mail stack whose implicit-TLS ports are served by HAProxy 2.6 in front of Dovecot.

The same stack as :mod:`tests.support.daemons` (Postfix, Dovecot, nginx, the agent), except:

* ``stack.ports["imaps"]`` and ``["pop3s"]`` are HAProxy's listeners (TLS by SNI from the agent's
  crt-list), which pass the plaintext to Dovecot listeners with ``haproxy = yes``
  (``["imap_proxy"]``, ``["pop3_proxy"]``) over PROXY v2 with the SSL TLV;
* Dovecot keeps 143/110 (STARTTLS) with the server-wide certificate only (``[dovecot]
  local_names = false``) and trusts PROXY headers from 127.0.0.1 only, the front's address;
* HAProxy runs as Debian runs it: master-worker (``-W``) with a master CLI (``-S``), the worker
  as user ``haproxy``, an admin stats socket for the runtime API.

Clients in tests connect from 127.0.0.2 (``CLIENT_ADDRESS``): a client on the listener's own
address is "secured" by Dovecot's same-IP rule and would hide whether PROXY v2 carried TLS.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from pathlib import Path

from tests.support.daemons import (
    AgentProcess,
    Stack,
    _kill_pid,
    _pid_from,
    _run,
    make_root,
    start_dovecot,
    start_nginx,
    start_postfix,
    stop_daemons,
    wait_for_port,
    write_agent_config,
    write_stack,
)
from tests.support.ports import free_port

CLIENT_ADDRESS = "127.0.0.2"


def haproxy_dir(stack: Stack) -> Path:
    return stack.root / "haproxy"


def _write_dovecot_behind_front(stack: Stack) -> None:
    """``stack.ports["imaps_direct"]``, when present, is a Dovecot IMAPS listener of its own (the
    benchmarks compare handshakes through the front with it)."""
    d = stack.dovecot_conf.parent
    p = stack.ports
    direct = (
        f"  inet_listener imaps_direct {{\n    port = {p['imaps_direct']}\n    ssl = yes\n  }}\n"
        if "imaps_direct" in p else ""
    )
    text = stack.dovecot_conf.read_text()
    start = text.index("service imap-login {")
    end = text.index("service config {")
    text = (
        text[:start]
        + f"""\
haproxy_trusted_networks = 127.0.0.1/32
mail_location = maildir:~/Maildir
login_log_format_elements = user=<%u> method=%m rip=%r lip=%l mpid=%e %c secured=%{{secured}}
service imap-login {{
  inet_listener imap {{
    port = {p["imap"]}
  }}
  inet_listener imap_proxy {{
    port = {p["imap_proxy"]}
    haproxy = yes
  }}
  inet_listener imaps {{
    port = 0
  }}
{direct}}}
service pop3-login {{
  inet_listener pop3 {{
    port = {p["pop3"]}
  }}
  inet_listener pop3_proxy {{
    port = {p["pop3_proxy"]}
    haproxy = yes
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""
        + text[end:]
    )
    stack.dovecot_conf.write_text(text)
    (d / "mail").mkdir(exist_ok=True)


def _write_haproxy_main(stack: Stack) -> None:
    h = haproxy_dir(stack)
    h.mkdir(parents=True, exist_ok=True)
    (h / "haproxy.cfg").write_text(f"""\
global
    user haproxy
    group haproxy
    stats socket {h}/admin.sock mode 600 level admin
    stats timeout 30s
    pidfile {h}/haproxy.pid

defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
""")


def front_agent_toml(stack: Stack, runtime_max_changes: int = 100) -> str:
    """The ``[haproxy]`` section for this stack (docs/agent.md, "A TLS front for Dovecot")."""
    h = haproxy_dir(stack)
    p = stack.ports
    return f"""
[haproxy]
directory = "{stack.out("haproxy")}"
main_config = "{h}/haproxy.cfg"
runtime_socket = "{h}/admin.sock"
master_socket = "{h}/master.sock"
runtime_max_changes = {runtime_max_changes}
listeners = [
  {{bind = "127.0.0.1:{p["imaps"]}", server = "127.0.0.1:{p["imap_proxy"]}"}},
  {{bind = "127.0.0.1:{p["pop3s"]}", server = "127.0.0.1:{p["pop3_proxy"]}"}},
]
verify = [{{port = {p["imaps"]}, protocol = "imaps"}}, {{port = {p["pop3s"]}, protocol = "pop3s"}}]
"""


def write_front_stack(
    root: Path, *, controller_public_key: str, direct_imaps: bool = False, **kwargs
) -> Stack:
    stack = write_stack(root, controller_public_key=controller_public_key, **kwargs)
    stack.ports["imap_proxy"] = free_port()
    stack.ports["pop3_proxy"] = free_port()
    if direct_imaps:
        stack.ports["imaps_direct"] = free_port()
    _write_dovecot_behind_front(stack)
    _write_haproxy_main(stack)
    write_front_agent_config(stack)
    return stack


def write_front_agent_config(stack: Stack, runtime_max_changes: int = 100, **kwargs) -> Path:
    path = write_agent_config(stack, **kwargs)
    p = stack.ports
    text = path.read_text()
    # Dovecot: STARTTLS only, server-wide certificate only; the front serves 993/995.
    text = text.replace(
        f'  {{port = {p["imap"]}, protocol = "imap-starttls"}}, {{port = {p["imaps"]}, protocol = "imaps"}},\n'
        f'  {{port = {p["pop3"]}, protocol = "pop3-starttls"}}, {{port = {p["pop3s"]}, protocol = "pop3s"}},\n',
        f'  {{port = {p["imap"]}, protocol = "imap-starttls"}},\n'
        f'  {{port = {p["pop3"]}, protocol = "pop3-starttls"}},\n',
    )
    text = text.replace("[dovecot]\n", "[dovecot]\nlocal_names = false\n")
    text = text.replace("[testing]", front_agent_toml(stack, runtime_max_changes).lstrip() + "\n[testing]")
    path.write_text(text)
    return path


def haproxy_argv(stack: Stack) -> list[str]:
    h = haproxy_dir(stack)
    return [
        "haproxy", "-W", "-D", "-S", f"{h}/master.sock",
        "-f", f"{h}/haproxy.cfg", "-f", str(stack.out("haproxy") / "certpost.cfg"),
    ]  # fmt: skip


def start_haproxy(stack: Stack) -> None:
    _run(haproxy_argv(stack), stack.root / "haproxy-start.log")
    wait_for_port(stack.ports["imaps"])
    wait_for_port(stack.ports["pop3s"])


def master_pid(stack: Stack) -> int | None:
    return _pid_from(haproxy_dir(stack) / "haproxy.pid")


def worker_pids(stack: Stack) -> list[int]:
    """The current worker PIDs, from the master CLI's ``show proc``; [] while the master
    re-executes itself during a reload (its socket refuses connections meanwhile)."""
    out = master_command(stack, "show proc")
    pids, section = [], ""
    for line in out.decode().splitlines():
        if line.startswith("#"):
            section = line
        elif section.startswith("# workers") and line.split()[1:2] == ["worker"]:
            pids.append(int(line.split()[0]))
    return pids


def master_command(stack: Stack, text: str) -> bytes:
    """One command on the master CLI; b"" when it is not answering.

    During a reload the master re-executes itself: its socket refuses connections, and one it
    had accepted just before is reset (measured: 7 resets in 30 reloads of 300 certificates,
    polled every 0.1 s). That reset was the "connection reset right after a seamless reload"
    of issue 12; it is an answer to wait for, like a refusal."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(haproxy_dir(stack) / "master.sock"))
            sock.sendall(text.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)  # the master CLI answers once the request is complete
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
            return out
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, FileNotFoundError):
        return b""


def reload_haproxy(stack: Stack, timeout: float = 60) -> list[int]:
    """A seamless reload through the master CLI; the new workers' PIDs once they serve."""
    deadline = time.monotonic() + timeout
    before = worker_pids(stack)
    while not before and time.monotonic() < deadline:  # a master still busy after a start
        time.sleep(0.1)
        before = worker_pids(stack)
    if not before:
        raise RuntimeError(f"HAProxy has no worker to replace after {timeout} s")
    master_command(stack, "reload")
    while time.monotonic() < deadline:
        now = worker_pids(stack)
        if now and not set(now) & set(before):
            return now
        time.sleep(0.1)
    raise TimeoutError(f"no new HAProxy worker {timeout} s after the reload")


def stop_haproxy(stack: Stack) -> None:
    _kill_pid(master_pid(stack))


@contextlib.contextmanager
def running_front_stack(controller_public_key: str, *, keep: bool = False):
    """Postfix, Dovecot (behind the front), nginx, HAProxy and the agent; yields (stack, agent)."""
    root = make_root("certpost-front-")
    stack = write_front_stack(root, controller_public_key=controller_public_key)
    agent = AgentProcess(stack)
    try:
        agent.start()
        start_postfix(stack)
        start_dovecot_behind_front(stack)
        start_nginx(stack)
        start_haproxy(stack)
        yield stack, agent
    finally:
        agent.stop()
        stop_haproxy(stack)
        stop_daemons(stack)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def start_dovecot_behind_front(stack: Stack) -> None:
    _run(["dovecot", "-c", str(stack.dovecot_conf)], stack.root / "start.log")
    for name in ("imap", "pop3", "imap_proxy", "pop3_proxy"):
        wait_for_port(stack.ports[name])


__all__ = [
    "CLIENT_ADDRESS",
    "running_front_stack",
    "start_dovecot",
    "start_haproxy",
    "stop_haproxy",
    "worker_pids",
]
