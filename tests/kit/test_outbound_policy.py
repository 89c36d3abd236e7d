"""The outbound address rule (pure) and the guard's resolution (system resolver, and BIND).

Public addresses appear here only as inputs: nothing in this file connects anywhere.
"""

from __future__ import annotations

import ipaddress

import pytest

from app.kit.outbound import (
    OutboundPolicy,
    OutboundRefused,
    embedded_ipv4,
    non_public_reason,
    parse_networks,
)
from app.outbound import OutboundGuard, dns_server_resolver, parse_host_port

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "169.254.169.254": "link-local",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "192.0.0.8": "IETF",
    "192.0.2.1": "documentation",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "198.18.0.1": "benchmarking",
    "192.88.99.1": "6to4 relay",
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "2001:db8::53": "documentation",
    "3fff::1": "documentation",
    "2001:0:4136:e378::1": "Teredo",
    "100::1": "discard",
    "64:ff9b:1::a00:1": "local-use NAT64",
    "::127.0.0.1": "IPv4-compatible",
    "4000::1": "2000::/3",
    # IPv6 forms that carry a non-public IPv4 address are judged by that address.
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::7f00:1": "loopback",
    "64:ff9b::a9fe:a9fe": "link-local",
    "2002:7f00:1::1": "loopback",
    "2002:c0a8:101::1": "private",
}

PUBLIC = [
    "9.9.9.9",
    "1.1.1.1",
    "193.0.14.129",
    "2001:500:2f::f",
    "2606:4700:4700::1111",
    "::ffff:9.9.9.9",
    "64:ff9b::909:909",
    "2002:909:909::1",
]


@pytest.mark.parametrize(("address", "why"), REFUSED.items())
def test_non_public_addresses_are_refused_with_their_reason(address, why):
    reason = non_public_reason(ipaddress.ip_address(address))
    assert reason is not None and why.lower() in reason.lower(), reason
    with pytest.raises(OutboundRefused) as info:
        OutboundPolicy().check(address, 53)
    assert why.lower() in info.value.reason.lower()


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_passes_on_port_53(address):
    assert non_public_reason(ipaddress.ip_address(address)) is None
    assert OutboundPolicy().check(address, 53) == ipaddress.ip_address(address)


@pytest.mark.parametrize("port", [0, 52, 54, 853, 5353, 8345, 65535])
def test_only_port_53(port):
    with pytest.raises(OutboundRefused, match=f"port {port}"):
        OutboundPolicy().check("9.9.9.9", port)


@pytest.mark.parametrize(
    "text", ["", "localhost", "1.2.3", "999.1.1.1", "fe80::1%eth0", "9.9.9.9/32"]
)
def test_not_an_address(text):
    with pytest.raises(OutboundRefused):
        OutboundPolicy().check_address(text)


def test_embedded_ipv4():
    assert embedded_ipv4(ipaddress.IPv6Address("::ffff:10.0.0.1")) == ipaddress.IPv4Address(
        "10.0.0.1"
    )
    assert embedded_ipv4(ipaddress.IPv6Address("64:ff9b::7f00:1")) == ipaddress.IPv4Address(
        "127.0.0.1"
    )
    assert embedded_ipv4(ipaddress.IPv6Address("2002:7f00:1::")) == ipaddress.IPv4Address(
        "127.0.0.1"
    )
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")) is None


def test_operator_allow_list_widens_addresses_never_the_port():
    policy = OutboundPolicy(allow=parse_networks(["127.0.0.0/8", " fd00:53::/64 "]))
    assert str(policy.check("127.0.0.1", 53)) == "127.0.0.1"
    assert policy.check("::ffff:127.0.0.1", 53) == ipaddress.ip_address("::ffff:127.0.0.1")
    assert str(policy.check("fd00:53::1", 53)) == "fd00:53::1"
    with pytest.raises(OutboundRefused, match="port"):
        policy.check("127.0.0.1", 8345)
    with pytest.raises(OutboundRefused, match="private"):
        policy.check("10.0.0.1", 53)
    with pytest.raises(OutboundRefused, match="unique local"):
        policy.check("fd00:54::1", 53)
    with pytest.raises(ValueError):
        parse_networks(["10.0.0.0/33"])


def test_host_port_forms():
    assert parse_host_port("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_host_port("192.0.2.1:5353") == ("192.0.2.1", 5353)
    assert parse_host_port("[2001:db8::1]:5353") == ("2001:db8::1", 5353)
    assert parse_host_port("2001:db8::1") == ("2001:db8::1", 53)


def test_system_resolver_localhost_is_refused():
    with pytest.raises(OutboundRefused, match="localhost resolves to .*loopback"):
        OutboundGuard().resolve("localhost", 53)


def test_literals_skip_resolution_and_unknown_names_are_refused():
    def resolver(host):  # a literal must never reach the resolver
        raise AssertionError(host)

    guard = OutboundGuard(resolver=resolver)
    assert [str(a) for a in guard.resolve("9.9.9.9", 53)] == ["9.9.9.9"]
    with pytest.raises(OutboundRefused, match="loopback"):
        guard.resolve("::ffff:127.0.0.1", 53)
    with pytest.raises(OutboundRefused, match="port 8345"):
        guard.resolve("9.9.9.9", 8345)
    with pytest.raises(OutboundRefused, match="does not resolve"):
        OutboundGuard().resolve("no-such-host.invalid", 53)


def test_every_answer_must_pass():
    guard = OutboundGuard(resolver=lambda host: ["9.9.9.9", "10.0.0.7"])
    with pytest.raises(
        OutboundRefused, match="ns.example resolves to 10.0.0.7: 10.0.0.7 is private"
    ):
        guard.resolve("ns.example", 53)
    with pytest.raises(OutboundRefused, match="no A or AAAA"):
        OutboundGuard(resolver=lambda host: []).resolve("ns.example", 53)


def test_resolution_through_a_dns_server(bind_server):
    """`ns1.<zone>` is 127.0.0.1 in the test BIND: refused, unless the operator allows loopback."""
    resolver = dns_server_resolver(bind_server.host, bind_server.port)
    assert resolver("ns1.a.test") == ["127.0.0.1"]
    with pytest.raises(
        OutboundRefused, match="ns1.a.test resolves to 127.0.0.1: 127.0.0.1 is loopback"
    ):
        OutboundGuard(resolver=resolver).resolve("ns1.a.test", 53)
    allowing = OutboundGuard(OutboundPolicy(allow=parse_networks(["127.0.0.0/8"])), resolver)
    assert [str(a) for a in allowing.resolve("ns1.a.test", 53)] == ["127.0.0.1"]
    with pytest.raises(OutboundRefused, match="no A or AAAA"):
        OutboundGuard(resolver=resolver).resolve("absent.a.test", 53)
