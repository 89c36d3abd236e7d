"""The daemons run as Debian runs them, and the agent gives each exactly the files it reads.

nginx's workers (``user www-data;``) open the bundles at handshake time, so nginx's copies are
``root:www-data`` 0640 in ``root:www-data`` 0750 directories; Postfix and Dovecot load keys as
root, so theirs are root-only. Checked the way it matters: two tenants with different
certificates served through the real daemons, a real unprivileged read (``runuser``), and the
modes after a repair and after a rollback.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from tests.agent.test_agent_daemons import apply_ok, served
from tests.support.daemons import write_agent_config
from tests.support.pki import Issued

pytestmark = pytest.mark.daemons

TENANTS = ("tenant-one.test", "tenant-two.test")


@pytest.fixture(scope="module")
def tenants(test_ca, mail_stack) -> dict[str, Issued]:
    ca, _ = test_ca
    stack, _ = mail_stack
    made = {"server": ca.issue([stack.hostname])}
    for d in TENANTS:
        made[d] = ca.issue([f"mail.{d}", f"webmail.{d}"])
        made[d + "/renewed"] = ca.issue([f"mail.{d}", f"webmail.{d}"])
    return made


@pytest.fixture(scope="module")
def tenant_material(tenants) -> dict[str, Issued]:
    return {c.fingerprint: c for c in tenants.values()}


def desired(client, tenants, which: dict[str, str] | None = None) -> dict:
    which = which or {}
    pick = {d: tenants[which.get(d, d)].fingerprint for d in TENANTS}
    return {
        "generation": client.next_generation(),
        "server_hostname": client.stack.hostname,
        "server_certificate": tenants["server"].fingerprint,
        "webmail_default": tenants["server"].fingerprint,
        "mail": {f"mail.{d}": pick[d] for d in TENANTS},
        "webmail": {f"webmail.{d}": pick[d] for d in TENANTS},
    }


def assert_tenants_served(stack, doc: dict, ca_file: str) -> None:
    assert doc["mail"]["mail.tenant-one.test"] != doc["mail"]["mail.tenant-two.test"]
    for name, fp in doc["webmail"].items():
        assert served(stack, "https", name, ca_file) == fp, name
    for port in ("smtps", "smtp", "imaps", "pop3"):
        for name, fp in doc["mail"].items():
            assert served(stack, port, name, ca_file) == fp, (port, name)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(pid)


def _users(pids) -> set[str]:
    names = set()
    for pid in pids:
        try:
            names.add(pwd.getpwuid(_uid(pid)).pw_name)
        except FileNotFoundError:
            pass
    return names


def _master(path: Path) -> int:
    return int(path.read_text().split()[0])


def test_daemons_run_as_debian_packages_them(mail_stack):
    stack, _ = mail_stack
    nginx = _master(stack.nginx_dir / "nginx.pid")
    assert _uid(nginx) == 0
    assert _users(_children(nginx)) == {"www-data"}

    postfix = _master(stack.postfix_dir / "spool" / "pid" / "master.pid")
    assert _uid(postfix) == 0
    by_name = {Path(f"/proc/{pid}/comm").read_text().strip(): pid for pid in _children(postfix)}
    assert _users([by_name["qmgr"], by_name["pickup"]]) == {"postfix"}  # master.cf unpriv "-"

    dovecot = _master(stack.dovecot_conf.parent / "run" / "master.pid")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    sock = socket.create_connection(("127.0.0.1", stack.ports["imaps"]), timeout=10)
    with context.wrap_socket(sock) as tls:
        tls.recv(100)  # the greeting: an imap-login process holds this connection
        users = _users(_children(dovecot))
    assert {"dovenull", "dovecot"} <= users, users


def _mode(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


def _can_read(user: str, path: Path) -> bool:
    result = subprocess.run(
        ["runuser", "-u", user, "--", "head", "-c", "1", str(path)],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0


def assert_ownership(stack) -> None:
    """Exactly: nginx's files root:www-data 0640 in 0750 dirs; Postfix's and Dovecot's root-only."""
    nginx = stack.out("nginx")
    for directory in (nginx, nginx / "bundles", nginx / "bundles" / "by-name"):
        assert _mode(directory) == ("root", "www-data", 0o750), directory
    copies = sorted((nginx / "bundles" / "by-name").glob("*.pem"))  # named by SNI name
    assert copies
    for path in [*copies, nginx / "certpost.conf"]:
        assert _mode(path) == ("root", "www-data", 0o640), path
    for daemon in ("postfix", "dovecot"):
        out = stack.out(daemon)
        for directory in (out, out / "bundles"):
            assert _mode(directory) == ("root", "root", 0o700), directory
        for path in out.rglob("*"):
            if path.is_file():
                assert _mode(path)[:2] == ("root", "root") and _mode(path)[2] & 0o077 == 0, path
    # What the permissions are for: the worker user reads a key, nobody else does.
    assert _can_read("www-data", copies[0])
    assert not _can_read("nobody", copies[0])
    assert not _can_read("www-data", next((stack.out("postfix") / "bundles").glob("*.pem")))


def test_two_tenants_served_through_unprivileged_nginx_workers(
    agent_client, mail_stack, tenants, tenant_material, test_ca
):
    stack, _ = mail_stack
    doc = desired(agent_client, tenants)
    apply_ok(agent_client, doc, tenant_material)
    assert_tenants_served(stack, doc, test_ca[1])
    assert_ownership(stack)


def test_wrong_modes_left_by_others_are_repaired(
    agent_client, mail_stack, tenants, tenant_material, test_ca
):
    """A directory an operator made with mkdir (0755 root:root) and a copy someone chmodded are
    brought back on the next apply, including copies the apply does not rewrite."""
    stack, agent = mail_stack
    doc = desired(agent_client, tenants)
    apply_ok(agent_client, doc, tenant_material)
    nginx = stack.out("nginx")
    untouched = nginx / "bundles" / "by-name" / "webmail.tenant-two.test.pem"
    server_wide = stack.out("postfix") / "default.pem"  # the renewal below does not rewrite it
    for path, mode in (
        (nginx, 0o755),
        (nginx / "bundles", 0o755),
        (nginx / "bundles" / "by-name", 0o755),
        (untouched, 0o644),
        (server_wide, 0o644),
        (stack.out("postfix"), 0o755),
    ):
        os.chown(path, 0, 0)
        os.chmod(path, mode)
    agent.restart()
    renewed = desired(agent_client, tenants, which={"tenant-one.test": "tenant-one.test/renewed"})
    apply_ok(agent_client, renewed, tenant_material)
    assert _mode(untouched) == ("root", "www-data", 0o640)
    assert _mode(server_wide) == ("root", "root", 0o600)
    assert_ownership(stack)
    assert_tenants_served(stack, renewed, test_ca[1])


def test_rollback_keeps_files_readable_by_the_workers(
    agent_client, mail_stack, tenants, tenant_material, test_ca
):
    stack, agent = mail_stack
    before = desired(agent_client, tenants)
    apply_ok(agent_client, before, tenant_material)
    write_agent_config(stack, postfix_bundle_cert_first=True, verify_timeout=2)
    agent.restart()
    try:
        failing = desired(
            agent_client, tenants, which={"tenant-two.test": "tenant-two.test/renewed"}
        )
        response, _ = agent_client.push(failing, tenant_material)
        assert response.status_code == 422, response.text
        assert response.json()["rolled_back"] is True
        assert_ownership(stack)
        assert_tenants_served(stack, before, test_ca[1])
    finally:
        write_agent_config(stack)
        agent.restart()
