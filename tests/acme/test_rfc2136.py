"""RFC 2136 updates with TSIG against the real BIND."""

from __future__ import annotations

import pytest

from app.acme.dns import (
    DnsPropagationTimeout,
    DnsTsigRejected,
    DnsUnreachable,
    DnsUpdateRefused,
    DnsZoneNotFound,
    Rfc2136Provider,
)
from tests.support.ports import free_port

pytestmark = pytest.mark.acme


def _provider(bind_server, **overrides) -> Rfc2136Provider:
    kwargs = {
        "key_name": bind_server.key_name,
        "key_secret": bind_server.key_secret,
        "key_algorithm": bind_server.key_algorithm,
        "timeout": 3.0,
    }
    kwargs.update(overrides)
    return Rfc2136Provider(bind_server.host, kwargs.pop("port", bind_server.port), **kwargs)


def test_add_and_delete_one_value(dns_provider, txt_at):
    name = "_acme-challenge.z21.test"
    dns_provider.add_txt(name, "first")
    dns_provider.add_txt(name, "second")
    assert txt_at(name) == {"first", "second"}

    dns_provider.delete_txt(name, "first")
    assert txt_at(name) == {"second"}, "only the one value goes, not the RRset"

    dns_provider.delete_txt(name, "second")
    dns_provider.delete_txt(name, "second")  # absent: a no-op (RFC 2136 §3.4.2.4)
    assert txt_at(name) == set()


def test_several_values_in_one_update(dns_provider, txt_at):
    """A wildcard and its base name share one name: both values go in one UPDATE, both leave in one."""
    name = "_acme-challenge.z21.test"
    dns_provider.add_txt(name, "kept")
    dns_provider.add_txt_values(name, ["base", "wildcard"])
    assert txt_at(name) == {"kept", "base", "wildcard"}
    dns_provider.delete_txt_values(name, ["base", "wildcard", "absent"])
    assert txt_at(name) == {"kept"}
    dns_provider.delete_txt(name, "kept")
    assert txt_at(name) == set()


def test_zone_discovery_walks_up_to_the_soa(dns_provider, bind_server):
    assert dns_provider.find_zone("_acme-challenge.z03.test") == "z03.test"
    assert dns_provider.find_zone("_acme-challenge.deep.er.a.test") == "a.test"
    assert dns_provider.find_zone("a.test") == "a.test"
    assert dns_provider.find_zone("webmail.A.Test.") == "a.test"


def test_configured_zone_is_used_as_is(bind_server, txt_at):
    provider = _provider(bind_server, zone="z22.test")
    provider.add_txt("_acme-challenge.mail.z22.test", "v")
    assert txt_at("_acme-challenge.mail.z22.test") == {"v"}
    provider.delete_txt("_acme-challenge.mail.z22.test", "v")
    assert txt_at("_acme-challenge.mail.z22.test") == set()


def test_unknown_zone(dns_provider):
    with pytest.raises(DnsZoneNotFound) as info:
        dns_provider.add_txt("_acme-challenge.elsewhere.example", "v")
    assert info.value.code == "dns_zone_not_found"


def test_wrong_tsig_secret_is_rejected(bind_server, txt_at):
    wrong = "A" * 43 + "="
    provider = _provider(bind_server, key_secret=wrong)
    with pytest.raises(DnsTsigRejected) as info:
        provider.add_txt("_acme-challenge.z21.test", "v")
    assert info.value.code == "dns_tsig_rejected"
    assert wrong not in str(info.value) and wrong not in repr(provider)
    assert txt_at("_acme-challenge.z21.test") == set()


def test_unknown_tsig_key_is_rejected(bind_server):
    provider = _provider(bind_server, key_name="nobody")
    with pytest.raises(DnsTsigRejected):
        provider.add_txt("_acme-challenge.z21.test", "v")


def test_zone_the_key_may_not_update_is_refused(dns_provider, txt_at):
    with pytest.raises(DnsUpdateRefused) as info:
        dns_provider.add_txt("_acme-challenge.locked.test", "v")
    assert info.value.code == "dns_update_refused"
    assert txt_at("_acme-challenge.locked.test") == set()


def test_zone_the_server_does_not_serve_is_refused(bind_server):
    provider = _provider(bind_server, zone="example.net")
    with pytest.raises(DnsUpdateRefused):
        provider.add_txt("_acme-challenge.example.net", "v")


def test_unreachable_server(bind_server):
    provider = _provider(bind_server, port=free_port(), zone="a.test", timeout=1.0)
    with pytest.raises(DnsUnreachable) as info:
        provider.add_txt("_acme-challenge.a.test", "v")
    assert info.value.code == "dns_unreachable"


def test_propagation_waits_for_every_value(dns_provider):
    name = "_acme-challenge.z23.test"
    dns_provider.add_txt(name, "one")
    try:
        with pytest.raises(DnsPropagationTimeout) as info:
            dns_provider.wait_for_propagation(name, ["one", "two"], timeout=0.5, interval=0.1)
        assert info.value.code == "dns_propagation_timeout"
        dns_provider.add_txt(name, "two")
        dns_provider.wait_for_propagation(name, ["one", "two"], timeout=2, interval=0.1)
    finally:
        dns_provider.delete_txt(name, "one")
        dns_provider.delete_txt(name, "two")


def test_propagation_checks_the_configured_nameservers(bind_server):
    silent = ("127.0.0.1", free_port())
    provider = _provider(bind_server, propagation_nameservers=[silent])
    assert provider.nameservers_to_check("_acme-challenge.a.test") == [silent]
    with pytest.raises(DnsPropagationTimeout):
        provider.wait_for_propagation("_acme-challenge.a.test", ["x"], timeout=0.3, interval=0.1)
