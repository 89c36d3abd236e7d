"""Issuance against the real Pebble, with dns-01 through BIND and http-01 through a local server."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store

from app.acme import (
    AccountError,
    Http01Solver,
    issue,
    make_client,
    register_or_load_account,
)
from app.acme.keys import load_private_key
from tests.support.pebble import EAB_HMAC_KEY, EAB_KID

pytestmark = pytest.mark.acme


def verify_chain(pebble_server, issued, name: str) -> None:
    """Verify leaf + chain against Pebble's current root, as a TLS client would for `name`."""
    roots = x509.load_pem_x509_certificates(pebble_server.issuing_roots_pem().encode())
    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    intermediates = x509.load_pem_x509_certificates(issued.chain_pem.encode())
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(dt.datetime.now(dt.UTC))
        .build_server_verifier(x509.DNSName(name))
    )
    chain = verifier.verify(leaf, intermediates)
    assert chain[-1] == roots[0]


def test_wildcard_over_dns01(pebble_server, acme_account, dns_solver, txt_at):
    client, _, _ = acme_account
    issued = issue(client, ["a.test", "*.a.test"], "ec-p256", dns_solver, poll_interval=0.05)

    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"a.test", "*.a.test"}
    assert issued.names == ("a.test", "*.a.test")
    assert issued.not_after == leaf.not_valid_after_utc and issued.not_after.tzinfo
    key = load_private_key(issued.private_key_pem)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert issued.fullchain_pem.startswith(issued.certificate_pem)
    assert "PRIVATE KEY" not in repr(issued)

    for name in ("a.test", "webmail.a.test", "mail.a.test"):
        verify_chain(pebble_server, issued, name)
    assert txt_at("_acme-challenge.a.test") == set(), "TXT values are withdrawn after success"


@pytest.mark.parametrize("key_type", ["ec-p384", "rsa-2048"])
def test_key_types(pebble_server, acme_account, dns_solver, key_type):
    client, _, _ = acme_account
    issued = issue(client, ["mail.z24.test"], key_type, dns_solver, poll_interval=0.05)
    key = load_private_key(issued.private_key_pem)
    if key_type == "rsa-2048":
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    verify_chain(pebble_server, issued, "mail.z24.test")


def test_http01_for_webmail(pebble_server, acme_account, http01_responder):
    client, _, _ = acme_account
    solver = Http01Solver(http01_responder.publish, http01_responder.unpublish)
    issued = issue(
        client, ["webmail.z25.test", "mail.z25.test"], "ec-p256", solver, poll_interval=0.05
    )
    verify_chain(pebble_server, issued, "webmail.z25.test")
    assert any(p.startswith("/.well-known/acme-challenge/") for p in http01_responder.requests)
    assert http01_responder.tokens == {}, "tokens are unpublished after success"


def test_existing_account_is_loaded_from_its_key(pebble_server, acme_account, dns_solver):
    _, key_pem, uri = acme_account
    client, same_key, same_uri = register_or_load_account(
        pebble_server.directory_url, key_pem, None, ca_bundle=pebble_server.ca_bundle
    )
    assert (same_key, same_uri) == (key_pem, uri)

    # A stored account URL makes a ready client without any account request.
    client = make_client(
        pebble_server.directory_url, key_pem, account_uri=uri, ca_bundle=pebble_server.ca_bundle
    )
    issue(client, ["z24.test"], "ec-p256", dns_solver, poll_interval=0.05)


def test_rsa_account_key(pebble_server, dns_solver):
    client, key_pem, _ = register_or_load_account(
        pebble_server.directory_url,
        None,
        None,
        ca_bundle=pebble_server.ca_bundle,
        account_key_type="rsa-2048",
    )
    assert isinstance(load_private_key(key_pem), rsa.RSAPrivateKey)
    issue(client, ["www.z24.test"], "ec-p256", dns_solver, poll_interval=0.05)


def test_external_account_binding(pebble_server):
    _, _, uri = register_or_load_account(
        pebble_server.directory_url,
        None,
        "ops@a.test",
        eab_kid=EAB_KID,
        eab_hmac=EAB_HMAC_KEY,
        ca_bundle=pebble_server.ca_bundle,
    )
    assert uri.startswith("https://127.0.0.1:")


def test_external_account_binding_with_a_wrong_key(pebble_server):
    wrong = "A" * 64
    with pytest.raises(AccountError) as info:
        register_or_load_account(
            pebble_server.directory_url,
            None,
            "ops@a.test",
            eab_kid=EAB_KID,
            eab_hmac=wrong,
            ca_bundle=pebble_server.ca_bundle,
        )
    err = info.value
    assert err.step == "account"
    assert err.problem and err.problem["type"].startswith("urn:ietf:params:acme:error:")
    assert wrong not in str(err)


def test_unreachable_directory_is_an_account_error(pebble_server):
    from tests.support.ports import free_port

    with pytest.raises(AccountError) as info:
        register_or_load_account(
            f"https://127.0.0.1:{free_port()}/dir",
            None,
            None,
            ca_bundle=pebble_server.ca_bundle,
            request_timeout=2,
        )
    assert info.value.step == "account" and info.value.problem is None
