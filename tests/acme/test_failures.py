"""Failures carry the step, a stable code, the CA's problem document, and leave no TXT behind."""

from __future__ import annotations

import pytest

from app.acme import (
    AcmeError,
    Dns01Solver,
    DnsUpdateError,
    Http01Solver,
    HttpPublishError,
    PropagationError,
    ValidationError,
    issue,
)
from app.acme.dns import DnsUpdateRefused, Rfc2136Provider
from app.acme.dns.base import DnsProvider
from tests.support.ports import free_port

pytestmark = pytest.mark.acme

ACME_ERROR = "urn:ietf:params:acme:error:"


def _provider(bind_server, **overrides) -> Rfc2136Provider:
    kwargs = {
        "key_name": bind_server.key_name,
        "key_secret": bind_server.key_secret,
        "key_algorithm": bind_server.key_algorithm,
        "timeout": 3.0,
    }
    kwargs.update(overrides)
    return Rfc2136Provider(bind_server.host, bind_server.port, **kwargs)


class WrongValueDns01(Dns01Solver):
    """Publishes a TXT value the CA will not accept."""

    def validation_for(self, challb, account_key):
        key_authz, _ = super().validation_for(challb, account_key)
        return key_authz, "not-the-right-digest"


class SecondAddRefused(Rfc2136Provider):
    """Adds the first value for real, then refuses: a failure halfway through `prepare`
    (one value per request, as a provider without multi-value updates does)."""

    add_txt_values = DnsProvider.add_txt_values

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.added: list[tuple[str, str]] = []

    def add_txt(self, fqdn, value):
        if self.added:
            raise DnsUpdateRefused("refused for the test", fqdn=fqdn)
        super().add_txt(fqdn, value)
        self.added.append((fqdn, value))


def test_wrong_tsig_secret_fails_at_dns_update(acme_account, bind_server, txt_at):
    client, _, _ = acme_account
    solver = Dns01Solver(_provider(bind_server, key_secret="B" * 43 + "="))
    with pytest.raises(DnsUpdateError) as info:
        issue(client, ["z20.test", "*.z20.test"], "ec-p256", solver, poll_interval=0.05)
    err = info.value
    assert (err.step, err.code) == ("dns_update", "dns_tsig_rejected")
    assert isinstance(err, AcmeError) and err.problem is None
    assert txt_at("_acme-challenge.z20.test") == set()


def test_zone_the_key_may_not_update_fails_at_dns_update(acme_account, dns_solver, txt_at):
    client, _, _ = acme_account
    with pytest.raises(DnsUpdateError) as info:
        issue(client, ["mail.locked.test"], "ec-p256", dns_solver, poll_interval=0.05)
    assert (info.value.step, info.value.code) == ("dns_update", "dns_update_refused")
    assert txt_at("_acme-challenge.mail.locked.test") == set()


def test_name_in_a_zone_the_server_does_not_serve(acme_account, bind_server, dns_solver):
    client, _, _ = acme_account
    # Discovered zone: the server is authoritative for no parent of the name.
    with pytest.raises(DnsUpdateError) as info:
        issue(client, ["mail.elsewhere.example"], "ec-p256", dns_solver, poll_interval=0.05)
    assert (info.value.step, info.value.code) == ("dns_update", "dns_zone_not_found")
    # Configured zone the server does not serve: NOTAUTH, reported as refused.
    solver = Dns01Solver(_provider(bind_server, zone="elsewhere.example"))
    with pytest.raises(DnsUpdateError) as info:
        issue(client, ["mail.elsewhere.example"], "ec-p256", solver, poll_interval=0.05)
    assert (info.value.step, info.value.code) == ("dns_update", "dns_update_refused")


def test_second_name_refused_after_first_added_still_cleans_up(acme_account, bind_server, txt_at):
    client, _, _ = acme_account
    provider = SecondAddRefused(
        bind_server.host,
        bind_server.port,
        key_name=bind_server.key_name,
        key_secret=bind_server.key_secret,
    )
    with pytest.raises(DnsUpdateError) as info:
        issue(
            client, ["z19.test", "*.z19.test"], "ec-p256", Dns01Solver(provider), poll_interval=0.05
        )
    assert info.value.code == "dns_update_refused"
    assert provider.added == [("_acme-challenge.z19.test", provider.added[0][1])]
    assert txt_at("_acme-challenge.z19.test") == set()


def test_propagation_timeout(acme_account, bind_server, txt_at):
    client, _, _ = acme_account
    provider = _provider(bind_server, propagation_nameservers=[("127.0.0.1", free_port())])
    solver = Dns01Solver(provider, propagation_timeout=0.5, propagation_interval=0.1)
    with pytest.raises(PropagationError) as info:
        issue(client, ["z18.test", "*.z18.test"], "ec-p256", solver, poll_interval=0.05)
    err = info.value
    assert (err.step, err.code, err.timed_out) == ("propagation", "dns_propagation_timeout", True)
    assert txt_at("_acme-challenge.z18.test") == set()


def test_wrong_txt_value_fails_validation_with_the_cas_problem(acme_account, dns_provider, txt_at):
    client, _, _ = acme_account
    solver = WrongValueDns01(dns_provider, propagation_interval=0.1)
    with pytest.raises(ValidationError) as info:
        issue(client, ["z17.test", "*.z17.test"], "ec-p256", solver, poll_interval=0.05)
    err = info.value
    assert (err.step, err.code) == ("validation", "acme_validation_failed")
    problem = err.problem
    assert problem is not None
    problems = problem.get("subproblems") or [problem]
    for sub in problems:
        assert sub["type"].startswith(ACME_ERROR)
        assert sub["identifier"]["value"] == "z17.test"
        assert sub.get("detail")
    assert "z17.test" in err.detail
    assert txt_at("_acme-challenge.z17.test") == set()


def test_wrong_key_authorization_over_http01(acme_account, http01_responder):
    client, _, _ = acme_account
    solver = Http01Solver(
        lambda token, _key_authz: http01_responder.publish(token, "wrong"),
        http01_responder.unpublish,
    )
    with pytest.raises(ValidationError) as info:
        issue(client, ["webmail.z16.test"], "ec-p256", solver, poll_interval=0.05)
    err = info.value
    assert err.step == "validation"
    assert err.problem["type"] == ACME_ERROR + "unauthorized"
    assert err.problem["identifier"] == {"type": "dns", "value": "webmail.z16.test"}
    assert http01_responder.tokens == {}


def test_http01_publish_failure(acme_account):
    client, _, _ = acme_account

    def publish(token, key_authz):
        raise ConnectionError("agent unreachable")

    with pytest.raises(HttpPublishError) as info:
        issue(
            client,
            ["webmail.z15.test"],
            "ec-p256",
            Http01Solver(publish, lambda t: None),
            poll_interval=0.05,
        )
    assert info.value.step == "http_publish"


def test_wildcard_cannot_use_http01(acme_account, http01_responder):
    client, _, _ = acme_account
    solver = Http01Solver(http01_responder.publish, http01_responder.unpublish)
    with pytest.raises(AcmeError) as info:
        issue(client, ["*.z14.test"], "ec-p256", solver, poll_interval=0.05)
    assert info.value.step in ("order", "http_publish")


def test_order_rejected_by_the_ca(acme_account, dns_solver):
    client, _, _ = acme_account
    with pytest.raises(AcmeError) as info:
        issue(client, ["bad_name..z13.test"], "ec-p256", dns_solver, poll_interval=0.05)
    err = info.value
    assert err.step == "order"
    assert err.problem and err.problem["type"].startswith(ACME_ERROR)
