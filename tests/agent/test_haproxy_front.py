"""The agent with an HAProxy TLS front for Dovecot's implicit-TLS ports, against the real daemons.

HAProxy 2.6 serves 993/995 by SNI from the agent's crt-list and hands the plaintext to Dovecot
over PROXY v2 with the SSL TLV; Dovecot keeps STARTTLS (143/110) with the server-wide certificate.
Clients connect from 127.0.0.2 (tests/support/haproxy.py says why).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time

import pytest

from app.kit.signing import public_key_to_text
from tests.agent.fixtures import SignedAgentClient
from tests.support.haproxy import (
    CLIENT_ADDRESS,
    haproxy_dir,
    reload_haproxy,
    running_front_stack,
    worker_pids,
)
from tests.support.tlsprobe import served_fingerprint

pytestmark = pytest.mark.daemons

DOMAINS = [f"d{i:03}.test" for i in range(300)]


def crt_lists(stack) -> str:
    """The default's crt-list and the sixteen lists of names, as one text."""
    out = stack.out("haproxy")
    return "".join(p.read_text() for p in [out / "certpost.crtlist", *sorted(out.glob("certpost.crtlist.?"))])


@pytest.fixture(scope="module")
def front(controller_key):
    keep = os.environ.get("CERTPOST_KEEP_STACK") == "1"
    with running_front_stack(public_key_to_text(controller_key.public_key()), keep=keep) as (
        stack,
        agent,
    ):
        client = SignedAgentClient(stack, agent, controller_key)
        yield stack, agent, client
        client.close()


@pytest.fixture(scope="module")
def certs(test_ca, front):
    """One ECDSA certificate per domain (about 1 ms each), plus the server-wide ones."""
    ca, _ = test_ca
    stack, _, _ = front
    made = {"server": ca.issue([stack.hostname]), "server2": ca.issue([stack.hostname])}
    for d in DOMAINS:
        made[d] = ca.issue([f"mail.{d}"])
    made["renewed"] = ca.issue([f"mail.{DOMAINS[7]}"])
    made["added"] = ca.issue(["mail.new.test"])
    return made


@pytest.fixture(scope="module")
def material(certs):
    return {c.fingerprint: c for c in certs.values()}


def document(client, certs, *, server="server", mail=None) -> dict:
    mail = mail if mail is not None else {f"mail.{d}": certs[d].fingerprint for d in DOMAINS}
    return {
        "generation": client.next_generation(),
        "server_hostname": client.stack.hostname,
        "server_certificate": certs[server].fingerprint,
        "webmail_default": certs[server].fingerprint,
        "mail": mail,
        "webmail": {},
    }


def apply_ok(client, desired, material) -> dict:
    response, _ = client.push(desired, material)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "applied" and not body["failed_names"], body
    return body


def seen(stack, port: str, sni: str | None, ca_file: str | None = None) -> str:
    protocol = {
        "imaps": "imaps", "pop3s": "pop3s", "imap": "imap-starttls", "pop3": "pop3-starttls",
        "smtp": "smtp-starttls", "smtps": "smtps",
    }[port]  # fmt: skip
    return served_fingerprint(
        "127.0.0.1", stack.ports[port], protocol, sni, ca_file=ca_file, check_hostname=bool(sni and ca_file)
    )


def _connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((CLIENT_ADDRESS, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _line(stream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = stream.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def imap_login(port: int, *, tls_name: str | None, ca_file: str | None) -> bytes:
    """LOGIN over implicit TLS (``tls_name``) or in plaintext; the tagged reply."""
    sock = _connect(port)
    if tls_name is not None:
        context = ssl.create_default_context(cafile=ca_file)
        sock = context.wrap_socket(sock, server_hostname=tls_name)
    with sock:
        assert _line(sock).startswith(b"* OK")
        sock.sendall(b"a LOGIN alice test\r\n")
        while True:
            line = _line(sock)
            if line.startswith(b"a ") or not line:
                return line


def pop3_login(port: int, *, tls_name: str, ca_file: str) -> bytes:
    context = ssl.create_default_context(cafile=ca_file)
    with context.wrap_socket(_connect(port), server_hostname=tls_name) as sock:
        assert _line(sock).startswith(b"+OK")
        sock.sendall(b"USER bob\r\n")
        assert _line(sock).startswith(b"+OK")
        sock.sendall(b"PASS test\r\n")
        return _line(sock)


def dovecot_log(stack) -> str:
    return (stack.dovecot_conf.parent / "dovecot.log").read_text(errors="replace")


def test_per_domain_certificates_on_the_implicit_tls_ports(front, certs, material, test_ca):
    stack, _, client = front
    workers = worker_pids(stack)
    desired = document(client, certs)
    body = apply_ok(client, desired, material)
    assert body["changed"]["haproxy"] is True
    # 300 new names is more than the stack's runtime_max_changes (100): one seamless reload.
    assert worker_pids(stack) and not set(worker_pids(stack)) & set(workers)
    ca_file = test_ca[1]
    for d in (DOMAINS[0], DOMAINS[150], DOMAINS[-1]):
        for port in ("imaps", "pop3s"):
            assert seen(stack, port, f"mail.{d}", ca_file) == certs[d].fingerprint, (port, d)
    for port in ("imaps", "pop3s"):
        # No SNI and an unknown name: the server-wide certificate (the crt-list's first line).
        assert seen(stack, port, None) == certs["server"].fingerprint
        assert seen(stack, port, "unknown.example.test") == certs["server"].fingerprint
    # STARTTLS stays on Dovecot, which has the server-wide certificate only.
    for port in ("imap", "pop3"):
        assert seen(stack, port, f"mail.{DOMAINS[3]}") == certs["server"].fingerprint
        assert seen(stack, port, stack.hostname, ca_file) == certs["server"].fingerprint
    # Postfix keeps its own SNI maps.
    assert seen(stack, "smtp", f"mail.{DOMAINS[4]}", ca_file) == certs[DOMAINS[4]].fingerprint
    assert client.state()["tls_front"] == "haproxy"
    # Dovecot's include has no local_name block: its configuration no longer grows with domains.
    assert "local_name" not in (stack.out("dovecot") / "certpost.conf").read_text()
    lines = crt_lists(stack).splitlines()
    assert len([line for line in lines if not line.startswith("#")]) == 1 + len(DOMAINS)
    # The bundles hold key and leaf only; the intermediate is in issuers/ once, and HAProxy
    # completed every chain from it (the handshakes above verified against the root alone).
    bundle = (stack.out("haproxy") / "bundles" / f"{certs[DOMAINS[0]].fingerprint}.pem").read_text()
    assert bundle.count("BEGIN CERTIFICATE") == 1
    assert [p.read_text() for p in (stack.out("haproxy") / "issuers").iterdir()] == [certs[DOMAINS[0]].chain_pem]


def test_login_through_the_front_is_secured_with_the_client_address(front, certs, material, test_ca):
    stack, _, client = front
    if client.state()["applied_generation"] == 0:
        apply_ok(client, document(client, certs), material)
    ca_file = test_ca[1]
    name = f"mail.{DOMAINS[42]}"
    before = len(dovecot_log(stack))
    assert imap_login(stack.ports["imaps"], tls_name=name, ca_file=ca_file).startswith(b"a OK")
    assert pop3_login(stack.ports["pop3s"], tls_name=name, ca_file=ca_file).startswith(b"+OK")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logged = dovecot_log(stack)[before:]
        if "pop3-login: Info: Login:" in logged and "imap-login: Info: Login:" in logged:
            break
        time.sleep(0.1)
    logins = [line for line in logged.splitlines() if "-login: Info: Login:" in line]
    assert len(logins) == 2, logged
    for line in logins:
        # The client's own address (not the front's), and secured although rip != lip: only
        # the PROXY v2 SSL TLV says so (without it LOGIN is refused, PRIVACYREQUIRED).
        assert f"rip={CLIENT_ADDRESS}, lip=127.0.0.1" in line and "secured=secured" in line, line


def test_plaintext_login_is_still_refused(front, certs, material):
    stack, _, _ = front
    reply = imap_login(stack.ports["imap"], tls_name=None, ca_file=None)
    assert reply.startswith((b"a NO", b"a BAD")), reply
    assert b"PRIVACYREQUIRED" in reply or b"disallowed" in reply.lower(), reply
    # Dovecot's PROXY listener from an address outside haproxy_trusted_networks: refused.
    sock = _connect(stack.ports["imap_proxy"])
    with sock:
        sock.sendall(b"PROXY TCP4 10.0.0.1 127.0.0.1 1 2\r\n")
        try:
            first = _line(sock)
        except ConnectionResetError:  # closed on us: refused as well
            first = b""
        assert not first.startswith(b"* OK"), first


def test_one_domain_change_goes_through_the_runtime_api(front, certs, material, test_ca):
    stack, _, client = front
    base = document(client, certs)
    apply_ok(client, base, material)
    workers = worker_pids(stack)
    master = (haproxy_dir(stack) / "haproxy.pid").read_text().split()[0]
    name = f"mail.{DOMAINS[7]}"
    changed = {**base["mail"], name: certs["renewed"].fingerprint, "mail.new.test": certs["added"].fingerprint}
    del changed[f"mail.{DOMAINS[8]}"]
    desired = {**base, "generation": base["generation"] + 1, "mail": changed}
    body = apply_ok(client, desired, material)
    assert body["changed"]["haproxy"] is True
    ca_file = test_ca[1]
    assert seen(stack, "imaps", name, ca_file) == certs["renewed"].fingerprint
    assert seen(stack, "pop3s", "mail.new.test", ca_file) == certs["added"].fingerprint
    assert seen(stack, "imaps", f"mail.{DOMAINS[8]}") == certs["server"].fingerprint
    # No reload: the same worker serves, the same master.
    assert worker_pids(stack) == workers
    assert (haproxy_dir(stack) / "haproxy.pid").read_text().split()[0] == master
    # Persisted for the next start: the crt-list names the new bundle, not the removed name.
    listing = crt_lists(stack)
    assert f" {name}\n" in listing and "mail.new.test" in listing
    assert f"mail.{DOMAINS[8]}" not in listing
    # ... and the server-wide certificate is replaced at runtime too.
    desired = {**desired, "generation": desired["generation"] + 1, "server_certificate": certs["server2"].fingerprint}
    apply_ok(client, desired, material)
    assert seen(stack, "imaps", None) == certs["server2"].fingerprint
    assert worker_pids(stack) == workers


def test_a_restart_serves_what_the_runtime_api_changed(front, certs, material, test_ca):
    """The persisted files are what the next start reads: a seamless reload serves the same."""
    stack, _, client = front
    state = client.state()
    applied = state["applied_generation"]
    assert applied > 0
    names = (f"mail.{DOMAINS[7]}", "mail.new.test")
    before = {n: seen(stack, "imaps", n) for n in (*names, None)}
    workers = worker_pids(stack)
    assert not set(reload_haproxy(stack)) & set(workers)
    assert {n: seen(stack, "imaps", n) for n in before} == before
    # Set at runtime with their chain in the payload, read from key + leaf files after the
    # reload: the chain is still complete for a client that trusts the root alone.
    for name in names:
        assert seen(stack, "imaps", name, test_ca[1]) == before[name]


def test_no_handshake_fails_during_seamless_reloads(front, certs, test_ca):
    """Clients keep connecting to 993 through three reloads: none is refused, reset or served
    an incomplete chain. HAProxy 2.6's master hands the old worker's listening sockets to the new
    one (``-x sockpair@``; configuration manual, "expose-fd listeners": not required in
    master-worker mode), so no connection falls between the two workers."""
    stack, _, _ = front
    name = f"mail.{DOMAINS[5]}"
    expected = seen(stack, "imaps", name, test_ca[1])
    stop = threading.Event()
    results: list = []
    reloading = threading.Event()

    def hammer():
        while not stop.is_set():
            during = reloading.is_set()
            try:
                results.append((during, seen(stack, "imaps", name, test_ca[1])))
            except Exception as exc:  # noqa: BLE001 - every failure is counted, whatever it is
                results.append((during, exc))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            reloading.set()
            reload_haproxy(stack)
            reloading.clear()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failed = [r for _, r in results if r != expected]
    assert not failed, failed[:3]
    assert sum(1 for during, _ in results if during) >= 3  # some handshakes met a reload


def test_a_broken_front_configuration_rolls_back(front, certs, material, test_ca):
    stack, agent, client = front
    base = document(client, certs)
    apply_ok(client, base, material)
    config = stack.agent_config.read_text()
    try:
        # A server option HAProxy does not know: `haproxy -c` refuses the new certpost.cfg.
        stack.agent_config.write_text(
            config.replace("[haproxy]\n", '[haproxy]\nserver_options = "send-proxy-v2-ssl bogus-keyword"\n')
        )
        agent.restart()
        live = (stack.out("haproxy") / "certpost.cfg").read_text()
        desired = {**base, "generation": base["generation"] + 1}
        desired["mail"] = {**base["mail"], f"mail.{DOMAINS[9]}": certs["renewed"].fingerprint}
        response, _ = client.push(desired, material)
        assert response.status_code == 422, response.text
        failure = response.json()
        assert failure["step"] == "validate" and failure["daemon"] == "haproxy"
        assert "bogus-keyword" in failure["message"]
        assert (stack.out("haproxy") / "certpost.cfg").read_text() == live
        assert seen(stack, "imaps", f"mail.{DOMAINS[9]}") == certs[DOMAINS[9]].fingerprint
    finally:
        stack.agent_config.write_text(config)
        agent.restart()


def test_an_unreachable_runtime_api_restores_the_files(front, certs, material, test_ca):
    """The runtime step fails after the switch: the crt-list the next start reads is put back,
    so files and the running HAProxy never disagree, and nothing new is served."""
    stack, agent, client = front
    base = document(client, certs)
    apply_ok(client, base, material)
    listing = crt_lists(stack)
    config = stack.agent_config.read_text()
    name = f"mail.{DOMAINS[11]}"
    try:
        stack.agent_config.write_text(config.replace("/admin.sock", "/gone.sock"))
        agent.restart()
        desired = {**base, "generation": base["generation"] + 1}
        desired["mail"] = {**base["mail"], name: certs["renewed"].fingerprint}
        response, _ = client.push(desired, material)
        assert response.status_code == 422, response.text
        failure = response.json()
        assert (failure["step"], failure["daemon"]) == ("reload", "haproxy"), failure
        assert "runtime API" in failure["message"]
        assert crt_lists(stack) == listing
        assert seen(stack, "imaps", name) == certs[DOMAINS[11]].fingerprint
    finally:
        stack.agent_config.write_text(config)
        agent.restart()
    desired = {**base, "generation": client.next_generation()}
    desired["mail"] = {**base["mail"], name: certs["renewed"].fingerprint}
    apply_ok(client, desired, material)
    assert seen(stack, "imaps", name) == certs["renewed"].fingerprint  # (issued for another name)


def test_a_certificate_transaction_left_open_does_not_wedge_the_front(front, certs, material, test_ca):
    """HAProxy 2.6 holds one open certificate transaction per process. One left open (an agent
    killed between ``set`` and ``commit``, a ``set`` whose reply timed out) refused every later
    ``set ssl cert`` of another file, so every change of the server failed from then on: the
    agent aborts the transaction that is open, whichever file it is for, and goes on."""
    import asyncio

    from app.agent.backends.haproxy_runtime import command

    stack, _, client = front
    base = document(client, certs)
    apply_ok(client, base, material)
    sock = haproxy_dir(stack) / "admin.sock"
    default = str(stack.out("haproxy") / "default.pem")
    stray = (stack.out("haproxy") / "default.pem").read_bytes()
    reply = asyncio.run(command(sock, f"set ssl cert {default}", stray))
    assert "Transaction" in reply, reply  # open, never committed
    name = f"mail.{DOMAINS[12]}"
    desired = {**base, "generation": client.next_generation(),
               "mail": {**base["mail"], name: certs["added"].fingerprint}}
    apply_ok(client, desired, material)
    assert seen(stack, "imaps", name) == certs["added"].fingerprint
    listing = asyncio.run(command(sock, "show ssl cert"))
    assert "# transaction" not in listing, listing


def test_a_bundle_too_big_for_the_runtime_api_is_loaded_by_a_reload(front, certs, material, test_ca):
    """A ``set ssl cert`` payload larger than HAProxy's buffer (16 KB) gets an empty reply. One
    tenant's long chain failed every change of the server, for every tenant; it is now loaded
    by a seamless reload, and the others' changes go through with it."""
    import dataclasses

    stack, _, client = front
    ca, _ = test_ca
    base = document(client, certs)
    apply_ok(client, base, material)
    # RSA-4096 with 400 names, the intermediate repeated to a 10-certificate chain (the most the
    # controller accepts): about 20 KB, a legitimate upload.
    issued = ca.issue(["mail.big.test", *(f"n{i:03}.big.test" for i in range(399))], key_type="rsa-4096")
    big = dataclasses.replace(issued, chain=issued.chain * 9)
    assert len(big.key_pem + big.cert_pem + big.chain_pem) > 16384
    workers = worker_pids(stack)
    other = f"mail.{DOMAINS[13]}"
    desired = {**base, "generation": client.next_generation(),
               "mail": {**base["mail"], "mail.big.test": big.fingerprint, other: certs["added"].fingerprint}}
    apply_ok(client, desired, {**material, big.fingerprint: big})
    assert seen(stack, "imaps", "mail.big.test") == big.fingerprint
    assert seen(stack, "imaps", other) == certs["added"].fingerprint
    assert not set(worker_pids(stack)) & set(workers)  # a reload did it


def test_a_front_running_the_single_crt_list_is_upgraded_with_one_reload(front, certs, material, test_ca):
    """An installation from before the split lists: HAProxy runs one crt-list holding every
    name. The upgraded agent writes the sixteen lists and the new certpost.cfg at its start
    (nothing reloaded), and at the next change the running process, which does not know those
    lists, is reloaded once, seamlessly; then changes go through the runtime API again."""
    stack, agent, client = front
    base = document(client, certs)
    apply_ok(client, base, material)
    out = stack.out("haproxy")
    agent.stop()
    try:
        lists = [out / "certpost.crtlist", *sorted(out.glob("certpost.crtlist.?"))]
        single = "".join(p.read_text() for p in lists)  # every line in the one list, as before
        config = (out / "certpost.cfg").read_text()
        old_bind = " ".join(f"crt-list {p}" for p in lists)
        assert old_bind in config
        (out / "certpost.cfg").write_text(config.replace(old_bind, f"crt-list {lists[0]}"))
        (out / "certpost.crtlist").write_text(single)
        for path in lists[1:]:
            path.unlink()
        reload_haproxy(stack)  # HAProxy now serves from the one list
        name = f"mail.{DOMAINS[21]}"
        assert seen(stack, "imaps", name) == certs[DOMAINS[21]].fingerprint
    finally:
        agent.start()  # bootstrap: the split lists and certpost.cfg are written, no reload
    assert (out / "certpost.cfg").read_text() == config
    assert all(p.exists() for p in lists)
    workers = worker_pids(stack)
    desired = {**base, "generation": client.next_generation(),
               "mail": {**base["mail"], name: certs["renewed"].fingerprint}}
    apply_ok(client, desired, material)
    assert seen(stack, "imaps", name) == certs["renewed"].fingerprint
    assert seen(stack, "pop3s", f"mail.{DOMAINS[22]}", test_ca[1]) == certs[DOMAINS[22]].fingerprint
    reloaded = worker_pids(stack)
    assert not set(reloaded) & set(workers)  # the one reload that read the new lists
    again = {**desired, "generation": client.next_generation(),
             "mail": {**desired["mail"], name: certs[DOMAINS[21]].fingerprint}}
    apply_ok(client, again, material)
    assert seen(stack, "imaps", name) == certs[DOMAINS[21]].fingerprint
    assert worker_pids(stack) == reloaded  # and from then on, the runtime API alone
