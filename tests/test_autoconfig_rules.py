"""Autoconfiguration's pure parts: the advertised host name (rules.autoconfig_hostname on the
same mail status as the TLS status), the names a certificate must cover, the delta member and
the agent's reading of it, and the documents' shape before nginx serves them."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from app.agent.backends.nginx_autoconfig import http_maps
from app.agent.desired import Desired, DesiredDelta
from app.agent.mailconfig import autodiscover, mobileconfig, thunderbird
from app.deployments.autoconfig import domains_of
from app.deployments.delta import delta_body
from app.domains import rules
from app.kit.digest import config_digest
from app.kit.mailclients import ENDPOINTS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
S = "5" * 64


@dataclass
class Cert:
    sans: list[str]
    trusted: bool = True
    self_signed: bool = False
    not_before: datetime = NOW - timedelta(days=10)
    not_after: datetime = NOW + timedelta(days=80)


def advertised(presented: Cert, source: str, server_cert: Cert, *, per_domain: bool = True) -> str:
    status = rules.service_status("mail", "a.test", presented, source, server_hostname="mx.host.test",
                                  server_cert=server_cert, per_domain_mail=per_domain, now=NOW, expiring_days=30)
    return rules.autoconfig_hostname(status, "mx.host.test")


def test_advertised_host_name():
    trusted_server = Cert(["mx.host.test"])
    untrusted_server = Cert(["mx.host.test"], trusted=False, self_signed=True)
    # A trusted binding: mail.<d>, whatever the server-wide certificate is.
    assert advertised(Cert(["mail.a.test"]), "binding", trusted_server) == "mail.a.test"
    assert advertised(Cert(["*.a.test"]), "binding", untrusted_server) == "mail.a.test"
    # No binding, or one clients would warn about: the server's host name.
    assert advertised(trusted_server, "server-default", trusted_server) == "mx.host.test"
    assert advertised(Cert(["mail.a.test"], trusted=False), "binding", trusted_server) == "mx.host.test"
    expired = Cert(["mail.a.test"], not_after=NOW - timedelta(seconds=1))
    assert advertised(expired, "binding", trusted_server) == "mx.host.test"
    # Neither warning-free: still the server's host name (one exception for one name).
    assert advertised(untrusted_server, "server-default", untrusted_server) == "mx.host.test"
    # A server-wide certificate that happens to cover mail.<d>: warning-free there.
    assert advertised(Cert(["mx.host.test", "*.a.test"]), "server-default", trusted_server) == "mail.a.test"


def test_names_a_certificate_touches_and_covers():
    assert rules.mail_names_named(["mx.host.test", "*.a.test", "mail.b.test", "webmail.c.test"]) == [
        "mail.a.test", "mail.b.test"]
    assert rules.autoconfig_uncovered(Cert(["*.a.test"]), "a.test") == []
    assert rules.autoconfig_uncovered(Cert(["webmail.a.test", "autoconfig.a.test"]), "a.test") == [
        "autodiscover.a.test"]
    assert rules.autoconfig_uncovered(Cert(["a.test"]), "a.test") == ["autoconfig.a.test", "autodiscover.a.test"]
    assert domains_of(["mail.a.test", "webmail.b.test", "mail.c.d.test"]) == ["a.test", "c.d.test"]


def test_endpoints_prefer_implicit_tls():
    """RFC 8314: per protocol, implicit TLS comes before STARTTLS, and nothing is plaintext."""
    seen: dict[str, str] = {}
    for endpoint in ENDPOINTS:
        seen.setdefault(endpoint.protocol, endpoint.security)
    assert seen == {"imap": "tls", "pop3": "tls", "smtp": "tls"}
    assert {(e.protocol, e.port) for e in ENDPOINTS if e.security == "tls"} == {
        ("imap", 993), ("pop3", 995), ("smtp", 465)}


APPLIED = {"generation": 3, "server_hostname": "mx.host.test", "server_certificate": S, "webmail_default": S,
           "mail": {}, "webmail": {}, "autoconfig": {"a.test": "mx.host.test", "b.test": "mx.host.test"}}


def test_delta_carries_autoconfig_changes_and_the_agent_applies_them():
    head = {k: APPLIED[k] for k in ("server_hostname", "server_certificate", "webmail_default")}
    assert "autoconfig_changes" not in delta_body(4, config_digest(APPLIED), head, {})
    body = delta_body(4, config_digest(APPLIED), head, {}, {"a.test": "mail.a.test", "b.test": None,
                                                           "c.test": "mx.host.test"})
    resolved = DesiredDelta.model_validate(body).resolve(APPLIED).without_bundles()
    assert resolved["autoconfig"] == {"a.test": "mail.a.test", "c.test": "mx.host.test"}


def test_documents_without_autoconfig_keep_their_digest():
    """A document from a controller without the feature digests as before (no empty member)."""
    old = {k: v for k, v in APPLIED.items() if k != "autoconfig"}
    assert Desired.model_validate(old).without_bundles() == old


@pytest.mark.parametrize("entry", [
    {"a.test": 'mail.a.test"; include /etc/shadow; "'}, {"a.test": "Mail.A.test"}, {"a.test;": "mail.a.test"},
    {"a.test": "mail.a.test\n"}, {"*.a.test": "mail.a.test"}, {"a.test": "<x>"},
])
def test_agent_refuses_what_is_not_a_host_name(entry):
    """Values go verbatim into nginx's configuration and the documents: only canonical names."""
    with pytest.raises(ValidationError):
        Desired.model_validate({**APPLIED, "autoconfig": entry})
    with pytest.raises(ValidationError):
        DesiredDelta.model_validate({**{k: APPLIED[k] for k in ("server_hostname", "server_certificate",
                                                                "webmail_default")},
                                     "generation": 4, "base_digest": S, "autoconfig_changes": entry})


def test_documents_parse_with_values_filled_in():
    """The templates nginx serves, with real values instead of nginx variables."""
    root = ET.fromstring(thunderbird("a.test", "mail.a.test"))
    first = root.find("emailProvider/incomingServer")
    assert (first.get("type"), first.findtext("port"), first.findtext("socketType")) == ("imap", "993", "SSL")
    root = ET.fromstring(autodiscover("mail.a.test", "joe@a.test"))
    assert root.tag.endswith("}Autodiscover")
    profile = plistlib.loads(mobileconfig("a.test", "mail.a.test", None, "u1", "u2").encode())
    assert "EmailAddress" not in profile["PayloadContent"][0]
    maps = "".join(http_maps({"a.test": "mail.a.test"}))
    assert '    .a.test "a.test mail.a.test";\n' in maps


def test_a_held_back_mail_name_is_not_advertised():
    """The agent serves the server-wide certificate for a mail name it could not serve: its
    clients are told the server's host name instead (app.agent.isolation.served_view)."""
    from app.agent.backends.base import View
    from app.agent.isolation import NameFailure, served_view

    view = View(S, S, {"mail.a.test": "1" * 64, "mail.b.test": "2" * 64}, {}, "mx.host.test",
                {"a.test": "mail.a.test", "b.test": "mail.b.test"})
    failures = [NameFailure("mail.a.test", "mail", "1" * 64, "key_refused", "ee key too small", None),
                NameFailure("mail.b.test", "mail", "2" * 64, "key_refused", "ee key too small", "3" * 64)]
    served = served_view(view, failures)
    assert served.autoconfig == {"a.test": "mx.host.test", "b.test": "mail.b.test"}
    assert served.mail == {"mail.b.test": "3" * 64}


def test_nginx_autoconfig_option(tmp_path):
    from pathlib import Path

    from app.agent.backends.base import View
    from app.agent.backends.nginx import NginxBackend
    from app.agent.config import BackendConfig, ConfigError

    def backend(**options):
        return NginxBackend(BackendConfig("nginx", Path(tmp_path), None, (), (), (),
                                          options={"listen": ["127.0.0.1:443"], **options}))

    view = View(S, S, {}, {"webmail.a.test": "1" * 64}, "mx.host.test", {"a.test": "mail.a.test"})
    def include(b) -> str:  # the rendered include file (the name-addressed bundles are files too)
        return b.render(view).files[b.include_file].decode()

    text = include(backend())
    assert "autoconfig.a.test" in text and "mirror /certpost-read-body;" in text and "com.apple.mail.managed" in text
    text = include(backend(autoconfig=False))
    assert "autoconfig.a.test" not in text and "$certpost_autoconfig" not in text and "mirror" not in text
    with pytest.raises(ConfigError, match="autoconfig"):
        backend(autoconfig="false")
