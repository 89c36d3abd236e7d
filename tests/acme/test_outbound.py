"""The outbound guard on customers' DNS providers: refused at creation, refused again at use, and
a customer reads one generic `dns_unreachable` whatever the socket said.

Public addresses (9.9.9.9, 2606:4700:4700::1111) appear only in creation checks, which resolve
and never connect; every connection in this file goes to 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import dns.query
import dns.resolver
import dns.tsigkeyring
import dns.update
import pytest

from app.acme.dns import DnsUnreachable, Rfc2136Provider, authoritative_nameservers
from app.acme.errors import CUSTOMER_DETAILS, customer_view
from app.kit.conditions import condition
from app.kit.outbound import OutboundPolicy, parse_networks
from app.outbound import OutboundGuard, dns_server_resolver
from tests.support.acme_fixtures import controller_using
from tests.support.api import assert_problem, create_domain, create_server
from tests.support.ports import free_port
from tests.support.worker import order_finished, work_until

pytestmark = pytest.mark.acme

SECRET = "c2VjcmV0"


@pytest.fixture
def acme_ready(context, pebble_server):
    with controller_using(context, pebble_server) as pebble:
        yield pebble


@pytest.fixture
def outbound_settings(settings):
    """Lets a test set CERTPOST_OUTBOUND_* on the shared settings; restored afterwards."""
    saved = settings.outbound_allow, settings.outbound_resolver
    yield settings
    settings.outbound_allow, settings.outbound_resolver = saved


def _provider_body(server, port=53, account_id=None, **extra) -> dict:
    body = {
        "name": "p",
        "kind": "rfc2136",
        "settings": {
            "server": server,
            "port": port,
            "key_name": "k",
            "key_secret": SECRET,
            **extra,
        },
    }
    if account_id:
        body["account_id"] = account_id
    return body


def _set_a(bind, zone: str, name: str, address: str | None) -> None:
    """Point `name` at `address` (None: delete it) in the test BIND by a signed RFC 2136 update."""
    keyring = dns.tsigkeyring.from_text({bind.key_name: bind.key_secret})
    update = dns.update.UpdateMessage(zone + ".", keyring=keyring, keyalgorithm=bind.key_algorithm)
    update.delete(name + ".", "A")
    if address:
        update.add(name + ".", 1, "A", address)
    response = dns.query.tcp(update, bind.host, port=bind.port, timeout=5)
    assert response.rcode() == 0


@pytest.fixture
def open_port() -> Iterator[int]:
    """A TCP port that reads the request and hangs up: what made `EOFError` in the order's error.

    It reads the whole length-prefixed DNS message first, so the close is a FIN, not a reset.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                        chunk = conn.recv(65535)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()


CUSTOMER_REFUSED = [
    ("127.0.0.1", 53, {}),
    ("10.1.2.3", 53, {}),
    ("::1", 53, {}),
    ("::ffff:127.0.0.1", 53, {}),
    ("169.254.169.254", 53, {}),
    ("localhost", 53, {}),
    ("no-such-host.invalid", 53, {}),
    ("9.9.9.9", 8345, {}),
    ("9.9.9.9", 53, {"propagation_nameservers": ["127.0.0.1"]}),
    ("9.9.9.9", 53, {"propagation_nameservers": ["9.9.9.9", "[::ffff:10.0.0.1]:53"]}),
    ("9.9.9.9", 53, {"propagation_nameservers": ["9.9.9.9:5353"]}),
]


async def test_customer_creation_refused_for_non_public_targets(client, admin, customer_headers):
    _account, customer = await customer_headers()
    details = set()
    for server, port, extra in CUSTOMER_REFUSED:
        r = await client.post(
            "/v1/dns-providers", json=_provider_body(server, port, **extra), headers=customer
        )
        body = assert_problem(r, 422, "dns_target_not_allowed")
        details.add(body["detail"])
    # One text for every refusal: the customer does not learn what a name resolved to.
    assert len(details) == 1 and "127.0.0.1" not in details.pop()
    assert (await client.get("/v1/dns-providers", headers=customer)).json()["items"] == []
    # A public address on port 53 is stored (creation resolves, it never connects).
    r = await client.post(
        "/v1/dns-providers",
        json=_provider_body(
            "9.9.9.9", propagation_nameservers=["[2606:4700:4700::1111]", "9.9.9.9:53"]
        ),
        headers=customer,
    )
    assert r.status_code == 201, r.text


async def test_admin_sees_the_reason_and_may_allow_private_targets(
    client, admin, customer_headers, outbound_settings
):
    account_id, _customer = await customer_headers()
    # A customer's provider is used on the customer's behalf: guarded, whoever types it in.
    r = await client.post(
        "/v1/dns-providers", json=_provider_body("localhost", account_id=account_id), headers=admin
    )
    assert "loopback" in assert_problem(r, 422, "dns_target_not_allowed")["detail"]
    r = await client.post(
        "/v1/dns-providers", json=_provider_body("10.0.0.53", account_id=account_id), headers=admin
    )
    assert "10.0.0.53 is private" in assert_problem(r, 422, "dns_target_not_allowed")["detail"]
    outbound_settings.outbound_allow = "10.0.0.0/24, 127.0.0.0/8"
    r = await client.post(
        "/v1/dns-providers", json=_provider_body("10.0.0.53", account_id=account_id), headers=admin
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/dns-providers",
        json=_provider_body("127.0.0.1", 8345, account_id=account_id),
        headers=admin,
    )
    assert "port 8345" in assert_problem(r, 422, "dns_target_not_allowed")["detail"]
    # The platform's own providers (no account) are operator configuration: loopback, any port.
    outbound_settings.outbound_allow = ""
    r = await client.post(
        "/v1/dns-providers", json=_provider_body("127.0.0.1", 8345), headers=admin
    )
    assert r.status_code == 201, r.text


async def test_a_name_that_rebinds_to_loopback_is_refused_at_use(
    client, admin, context, acme_ready, bind_server, customer_headers, outbound_settings
):
    name = f"ns-{uuid.uuid4().hex[:8]}.z05.test"
    outbound_settings.outbound_resolver = bind_server.address  # a resolver this test controls
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "z05.test", server["id"], account_id)
    _set_a(bind_server, "z05.test", name, "9.9.9.9")
    try:
        r = await client.post("/v1/dns-providers", json=_provider_body(name), headers=customer)
        assert r.status_code == 201, r.text
        _set_a(bind_server, "z05.test", name, "127.0.0.1")  # the rebinding
        r = await client.post(
            "/v1/certificate-orders",
            json={"domain": "z05.test", "challenge": "dns-01", "dns_provider_id": r.json()["id"]},
            headers=customer,
        )
        assert r.status_code == 202, r.text
        order = await work_until(context, order_finished(client, customer, r.json()["id"]))
    finally:
        _set_a(bind_server, "z05.test", name, None)
    assert order["status"] == "invalid"
    assert order["error"]["code"] == "dns_unreachable"
    assert order["error"]["message"] == CUSTOMER_DETAILS["dns_unreachable"]
    seen_by_admin = (
        await client.get(f"/v1/certificate-orders/{order['id']}", headers=admin)
    ).json()["error"]
    assert seen_by_admin["code"] == "dns_unreachable"
    assert f"{name} resolves to 127.0.0.1: 127.0.0.1 is loopback" in seen_by_admin["message"]


async def test_customer_reads_the_same_error_for_an_open_and_a_closed_port(
    client, admin, context, acme_ready, customer_headers, open_port
):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    errors = {}
    for zone, port in (("z06.test", open_port), ("z07.test", free_port())):
        await create_domain(client, admin, zone, server["id"], account_id)
        # A platform provider (the operator's) aimed at loopback; `zone` set, so the first packet
        # is the UPDATE over TCP, as in the report.
        r = await client.post(
            "/v1/dns-providers", json=_provider_body("127.0.0.1", port, zone=zone), headers=admin
        )
        assert r.status_code == 201, r.text
        r = await client.post(
            "/v1/certificate-orders",
            json={"domain": zone, "challenge": "dns-01", "dns_provider_id": r.json()["id"]},
            headers=customer,
        )
        order = await work_until(context, order_finished(client, customer, r.json()["id"]))
        admin_view = (
            await client.get(f"/v1/certificate-orders/{order['id']}", headers=admin)
        ).json()["error"]
        errors[zone] = order["error"], admin_view
    (customer_open, admin_open), (customer_closed, admin_closed) = (
        errors["z06.test"],
        errors["z07.test"],
    )
    assert {**customer_open, "at": None} == {**customer_closed, "at": None}  # only the time differs
    assert (
        customer_open["code"] == "dns_unreachable" and str(open_port) not in customer_open["message"]
    )
    # The admin still tells them apart (which is what made the customer's view an oracle).
    assert "EOFError" in admin_open["message"] and "ConnectionRefusedError" in admin_closed["message"]


def test_the_checked_address_is_the_one_used(bind_server, txt_at):
    """Resolved once, checked, pinned: a later answer (here a private one) is never asked for."""
    answers = [["127.0.0.1"], ["10.0.0.1"]]
    calls = []

    def resolver(host):
        calls.append(host)
        return answers[len(calls) - 1]

    policy = OutboundPolicy(
        ports=frozenset({bind_server.port}), allow=parse_networks(["127.0.0.0/8"])
    )
    provider = Rfc2136Provider(
        "ns.rebinding.example",
        bind_server.port,
        key_name=bind_server.key_name,
        key_secret=bind_server.key_secret,
        key_algorithm=bind_server.key_algorithm,
        timeout=5.0,
        guard=OutboundGuard(policy, resolver),
    )
    provider.add_txt("_acme-challenge.z08.test", "pinned")
    assert txt_at("_acme-challenge.z08.test") == {"pinned"}
    provider.wait_for_propagation("_acme-challenge.z08.test", ["pinned"], timeout=5, interval=0.1)
    provider.delete_txt("_acme-challenge.z08.test", "pinned")
    assert txt_at("_acme-challenge.z08.test") == set()
    assert calls == ["ns.rebinding.example"]


def test_customer_view_keeps_code_step_and_time():
    at = datetime(2026, 11, 30, 9, 20, tzinfo=UTC)
    error = condition("dns_unreachable", "127.0.0.1:8345 ... EOFError()", at=at, step="dns_update",
                      details={"problem": {"type": "t", "detail": "127.0.0.1"}, "timed_out": True})
    assert customer_view(error) == {"code": "dns_unreachable", "message": CUSTOMER_DETAILS["dns_unreachable"],
                                    "step": "dns_update", "at": "2026-11-30T09:20:00+00:00",
                                    "details": {"timed_out": True}}
    other = condition("acme_validation_failed", "x", at=at, step="validation", details={"problem": {"type": "t"}})
    assert customer_view(other) is other and customer_view(None) is None


def test_authoritative_nameservers_through_the_guard(bind_server):
    """An NS host of a customer's zone that resolves to loopback is left out, not queried."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [bind_server.host], bind_server.port
    host_resolver = dns_server_resolver(bind_server.host, bind_server.port)
    guard = OutboundGuard(resolver=host_resolver)
    assert authoritative_nameservers("a.test", resolver=resolver, guard=guard) == []
    allowing = OutboundGuard(OutboundPolicy(allow=parse_networks(["127.0.0.0/8"])), host_resolver)
    found = authoritative_nameservers("a.test", resolver=resolver, guard=allowing)
    assert found == [("127.0.0.1", 53)]


def test_an_answer_that_is_not_dns_reads_as_unreachable():
    """A service answering something else (here 3 bytes) is no DNS server: `dns_unreachable`, not
    an internal error whose class name would tell it apart from a closed port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_garbage():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65535)
            conn.sendall(b"\x00\x03abc")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    provider = Rfc2136Provider(
        "127.0.0.1", port, key_name="k", key_secret=SECRET, zone="z09.test", timeout=5.0
    )
    try:
        with pytest.raises(DnsUnreachable, match="ShortHeader"):
            provider.add_txt("_acme-challenge.z09.test", "v")
    finally:
        thread.join(5)
        listener.close()


def test_propagation_servers_are_checked_again_at_use():
    """Stored before the rule (or before the operator narrowed the allow list): refused at use,
    before any query is sent."""
    provider = Rfc2136Provider(
        "9.9.9.9",
        key_name="k",
        key_secret=SECRET,
        propagation_nameservers=[("9.9.9.9", 53), ("127.0.0.1", 53)],
        guard=OutboundGuard(),
    )
    with pytest.raises(DnsUnreachable, match="127.0.0.1 is loopback"):
        provider.nameservers_to_check("_acme-challenge.z09.test")
    provider.propagation_nameservers = [("9.9.9.9", 5353)]
    with pytest.raises(DnsUnreachable, match="port 5353"):
        provider.nameservers_to_check("_acme-challenge.z09.test")
