"""Where a customer's webhook request really goes: the guard's checked address, the URL's host as
Host and TLS server name (so a record that rebinds between check and use cannot move it)."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from app.kit.outbound import OutboundPolicy, OutboundRefused
from app.outbound import OutboundGuard
from app.webhooks import policy, sender, signing, targets
from tests.support.pki import write_pem
from tests.support.receiver import start_receiver
from tests.webhooks.verify import verify


def guard(answers: dict[str, list[str]], port: int = 443, allow: str = "") -> OutboundGuard:
    networks = tuple(ipaddress.ip_network(n) for n in allow.split(",") if n)
    return OutboundGuard(OutboundPolicy(ports=frozenset({port}), allow=networks), lambda host: answers[host])


def test_the_request_names_the_checked_address_and_keeps_the_host():
    target = targets.resolve("https://hooks.example.net/in?x=1", guard({"hooks.example.net": ["8.8.4.4", "8.8.8.8"]}))
    assert target == targets.Target("https://8.8.4.4/in?x=1", "hooks.example.net", "hooks.example.net")
    v6 = targets.resolve("https://v6.example.net/in", guard({"v6.example.net": ["2001:4860:4860::8888"]}))
    assert v6.url == "https://[2001:4860:4860::8888]/in"


@pytest.mark.parametrize("answers", [["8.8.8.8", "127.0.0.1"], ["10.0.0.7"], ["::ffff:192.168.0.1"], []])
def test_a_host_with_any_private_address_is_refused(answers):
    with pytest.raises(OutboundRefused):
        targets.resolve("https://hooks.example.net/", guard({"hooks.example.net": answers}))


def test_only_https_on_443_for_a_customer():
    with pytest.raises(OutboundRefused):
        targets.resolve("http://hooks.example.net/", guard({"hooks.example.net": ["8.8.8.8"]}))
    with pytest.raises(OutboundRefused):
        targets.resolve("https://hooks.example.net:8443/", guard({"hooks.example.net": ["8.8.8.8"]}))
    assert targets.resolve("http://127.0.0.1:9/x", None).url == "http://127.0.0.1:9/x"  # an admin's: as it is


def test_the_retry_schedule_and_the_disable_rule():
    from datetime import UTC, datetime, timedelta
    from random import Random

    now = datetime(2026, 12, 1, tzinfo=UTC)
    schedule = policy.parse_schedule(policy.DEFAULT_SCHEDULE_TEXT)
    assert sum(schedule) / 3600 > 24  # retries span a day
    first = policy.next_attempt(now, 1, schedule, rng=Random(1))
    assert timedelta(seconds=4.5) <= first - now <= timedelta(seconds=5.5)
    assert policy.next_attempt(now, len(schedule) + 1, schedule) is None
    assert policy.next_attempt(now, 1, schedule, retry_after=policy.retry_after_seconds("120")) - now >= timedelta(seconds=120)
    assert policy.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert policy.succeeded(204) and not policy.succeeded(302) and not policy.succeeded(None)
    assert policy.should_disable(now - timedelta(days=1), now, 86400)
    assert not policy.should_disable(now - timedelta(hours=23), now, 86400) and not policy.should_disable(None, now, 1)
    with pytest.raises(ValueError):
        policy.parse_schedule("5,-1")


async def test_a_guarded_https_delivery_reaches_the_checked_address_with_sni(tmp_path, test_ca, settings):
    issued = test_ca.issue(["hooks.example.net"])
    chain, key = write_pem(tmp_path / "chain.pem", issued.cert_pem), write_pem(tmp_path / "key.pem", issued.key_pem)
    receiver, server = start_receiver(tls=(str(chain), str(key)))
    try:
        # The name resolves to loopback here, which the operator allowed (CERTPOST_OUTBOUND_ALLOW);
        # the port is the receiver's instead of 443 only because tests cannot take 443.
        checked = guard({"hooks.example.net": ["127.0.0.1"]}, port=receiver.port, allow="127.0.0.0/8")
        secret, body = signing.new_secret(), b'{"type":"token.created"}'
        headers = signing.headers(secret, "d-1", 1_700_000_000, body)
        async with httpx.AsyncClient(verify=sender.client_tls(settings.trust_bundle), trust_env=False) as client:
            outcome = await sender.send(client, f"https://hooks.example.net:{receiver.port}/in", headers, body,
                                        guard=checked, timeout=10)
            assert outcome.status_code == 200 and outcome.error is None, outcome
            [request] = receiver.requests
            assert request.headers["host"] == f"hooks.example.net:{receiver.port}" and request.body == body
            verify(secret, request.headers, body, tolerance=10**10)  # a fixed, old timestamp here
            # A certificate for another name fails the TLS check: SNI and verification use the URL's host.
            other = guard({"other.example.net": ["127.0.0.1"]}, port=receiver.port, allow="127.0.0.0/8")
            refused = await sender.send(client, f"https://other.example.net:{receiver.port}/in", headers, body,
                                        guard=other, timeout=10)
            assert refused.status_code is None and "ConnectError" in refused.error
            # Without the operator's allow list the same name is refused before any connection.
            blocked = await sender.send(client, f"https://hooks.example.net:{receiver.port}/in", headers, body,
                                        guard=guard({"hooks.example.net": ["127.0.0.1"]}, port=receiver.port),
                                        timeout=10)
            assert blocked.error.startswith("target not allowed") and len(receiver.requests) == 1
            assert "127.0.0.1" not in blocked.error  # what the name resolved to stays the operator's
    finally:
        server.shutdown()
        server.server_close()


def test_an_internationalised_host_goes_out_as_its_a_labels():
    """Host and SNI are ASCII on the wire; the resolver is asked for the same A-label name."""
    answers = {"xn--bcher-kva.example.net": ["8.8.8.8"]}
    target = targets.resolve("https://Bücher.example.net/in", guard(answers))
    assert target == targets.Target("https://8.8.8.8/in", "xn--bcher-kva.example.net", "xn--bcher-kva.example.net")
    with_port = targets.resolve("https://bücher.example.net:443/in", guard(answers))
    assert with_port.host_header == "xn--bcher-kva.example.net:443"
    assert targets.resolve("https://[2001:4860:4860::8888]/", guard({})).host_header == "[2001:4860:4860::8888]"
    with pytest.raises(OutboundRefused):  # not a name IDNA allows: refused, not an exception
        targets.resolve("https://a\u200db.example.net/", guard(answers))


async def test_a_delivery_to_an_internationalised_host_is_an_attempt_not_a_crash(tmp_path, test_ca, settings):
    """A customer's webhook on an IDN host: before, httpx raised UnicodeEncodeError on the Host
    header, outside its own errors, so the webhook's job crashed at every lease and the delivery
    was never recorded, retried or given up."""
    issued = test_ca.issue(["xn--bcher-kva.example.net"])
    chain, key = write_pem(tmp_path / "chain.pem", issued.cert_pem), write_pem(tmp_path / "key.pem", issued.key_pem)
    receiver, server = start_receiver(tls=(str(chain), str(key)))
    try:
        checked = guard({"xn--bcher-kva.example.net": ["127.0.0.1"]}, port=receiver.port, allow="127.0.0.0/8")
        body = b'{"type":"token.created"}'
        headers = signing.headers(signing.new_secret(), "d-1", 1_700_000_000, body)
        async with httpx.AsyncClient(verify=sender.client_tls(settings.trust_bundle), trust_env=False) as client:
            outcome = await sender.send(client, f"https://bücher.example.net:{receiver.port}/in", headers, body,
                                        guard=checked, timeout=10)
            assert outcome.status_code == 200 and outcome.error is None, outcome
            [request] = receiver.requests
            assert request.headers["host"] == f"xn--bcher-kva.example.net:{receiver.port}"
            # Whatever else httpx cannot encode is one failed attempt with a short reason.
            bad = {**headers, "webhook-id": "d-\u00fc"}
            failed = await sender.send(client, f"https://bücher.example.net:{receiver.port}/in", bad, body,
                                       guard=checked, timeout=10)
            assert failed.status_code is None and failed.error.startswith("request failed"), failed
    finally:
        server.shutdown()
        server.server_close()
