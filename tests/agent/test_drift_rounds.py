"""The agent's drift rounds (app/agent/drift.py): what a round probes, what is remembered and
read back, the configuration keys, and ``GET /v1/observations`` on the real agent."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.agent.backends.base import View
from app.agent.backends.dovecot import DovecotBackend
from app.agent.backends.nginx import NginxBackend
from app.agent.config import BackendConfig, ConfigError, VerifyTarget, parse_config
from app.agent.drift import DriftMonitor, Key, Observations, drift_plan
from app.kit.signing import public_key_to_text

A, B, D, W = "a" * 64, "b" * 64, "d" * 64, "e" * 64


def _backend(cls, name: str, ports: list[tuple[int, str]]):
    return cls(BackendConfig(name, Path("/nonexistent") / name, None, (), (),
                             tuple(VerifyTarget(p, proto) for p, proto in ports)))


BACKENDS = [
    _backend(DovecotBackend, "dovecot", [(993, "imaps"), (143, "imap-starttls")]),
    _backend(NginxBackend, "nginx", [(443, "https")]),
]
NAMES = {f"mail.d{i:02}.test": A for i in range(10)}
VIEW = View(D, W, {**NAMES, "*.w.test": B}, {"webmail.d00.test": A}, "mx1.test")


def test_every_name_is_probed_on_every_port_over_one_cycle() -> None:
    sample = 3
    bound = sorted(VIEW.mail)
    rounds = math.ceil(len(bound) / sample)
    seen: dict[int, set] = {993: set(), 143: set()}
    for round_no in range(rounds):
        probes = [p for p in drift_plan(BACKENDS, VIEW, round_no, sample, set()) if p.daemon == "dovecot"]
        for port in seen:
            on_port = [p for p in probes if p.port == port]
            assert len(on_port) == sample + 1  # the window and the no-SNI probe
            assert next(p for p in on_port if p.sni is None).expected == D
            seen[port] |= {p.name for p in on_port if p.name}
    assert seen[993] == seen[143] == set(bound)
    wildcard = next(p for p in drift_plan(BACKENDS, VIEW, 0, 100, set()) if p.name == "*.w.test")
    assert wildcard.sni == "certpost-probe.w.test" and wildcard.expected == B


def test_a_drifted_name_is_probed_every_round_until_it_matches() -> None:
    drifted = {Key("mail", "mail.d07.test", "dovecot", 993)}
    for round_no in range(4):
        probes = drift_plan(BACKENDS, VIEW, round_no, 1, drifted)
        assert any(p.name == "mail.d07.test" and p.port == 993 for p in probes)
    https = [p for p in drift_plan(BACKENDS, VIEW, 0, 5, set()) if p.daemon == "nginx"]
    assert {(p.name, p.expected) for p in https} == {(None, W), ("webmail.d00.test", A)}


def _probe(name, port=993):
    return next(p for p in drift_plan(BACKENDS, VIEW, 0, 100, set()) if p.name == name and p.port == port)


def test_observations_are_read_from_where_the_controller_stopped() -> None:
    obs = Observations()
    obs.record(_probe("mail.d00.test"), A, "")
    obs.record(_probe("mail.d01.test"), B, "")  # drifted
    obs.record(_probe(None), None, "connection refused")
    first = obs.page(None, 0, 2)
    assert first["epoch"] == obs.epoch and first["more"] is True and first["last_seq"] == 2
    assert [o["name"] for o in first["observations"]] == ["mail.d00.test", "mail.d01.test"]
    rest = obs.page(obs.epoch, first["last_seq"], 2)
    assert rest["more"] is False and [o["error"] for o in rest["observations"]] == ["connection refused"]
    assert rest["drifted"] == 2  # a wrong certificate and no certificate at all
    assert obs.page(obs.epoch, rest["last_seq"], 10)["observations"] == []
    # Another epoch (the agent restarted, or the controller never read it): everything again.
    assert len(obs.page("0123", 3, 10)["observations"]) == 3
    # A name probed again keeps one entry, with a newer number.
    obs.record(_probe("mail.d01.test"), A, "")
    again = obs.page(obs.epoch, 3, 10)["observations"]
    assert [(o["seq"], o["served"]) for o in again] == [(4, A)]
    assert obs.drift_by_port() == {("dovecot", 993): 1}
    obs.forget_unbound(View(D, W, {"mail.d00.test": A}, {}))
    assert {k.name for k in obs.latest} == {"mail.d00.test", None}


def _config(**agent) -> dict:
    key = public_key_to_text(Ed25519PrivateKey.generate().public_key())
    return {"agent": {"state_dir": "/tmp/x", "controller_public_key": key, **agent}}


def test_drift_settings() -> None:
    default = parse_config(_config())
    assert default.drift_interval == 300 and default.drift_sample == 24
    assert parse_config(_config(drift_interval=0)).drift_interval == 0  # off
    assert parse_config(_config(drift_interval=0.5, drift_sample=100)).drift_sample == 100
    for bad in ({"drift_interval": -1}, {"drift_interval": "5m"}, {"drift_interval": True}, {"drift_sample": 0},
                {"drift_sample": 2.5}, {"drift_samples": 3}):
        with pytest.raises(ConfigError):
            parse_config(_config(**bad))


@pytest.mark.daemons
def test_observations_endpoint_is_signed_and_checks_its_query(agent_client) -> None:
    response = agent_client.request("GET", "/v1/observations?after=0")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"epoch", "last_seq", "more", "observations", "drifted", "interval", "sample"}
    assert agent_client.request("GET", "/v1/observations", sign=False).status_code == 401
    for query in ("after=-1", "limit=0", "limit=99999", "epoch=zz", "after=x", "colour=red"):
        answer = agent_client.request("GET", f"/v1/observations?{query}")
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_request", query
    assert "observations" in agent_client.state()["features"]


def test_repair_plan_names_wrong_certificates_not_silent_ports() -> None:
    monitor = DriftMonitor(BACKENDS, asyncio.Lock(), lambda: VIEW, 0, 3)
    monitor.observations.record(_probe("mail.d01.test"), B, "")  # served the wrong certificate
    monitor.observations.record(_probe("mail.d02.test", 143), None, "connection refused")  # daemon down
    monitor.observations.record(next(p for p in drift_plan(BACKENDS, VIEW, 0, 5, set()) if p.daemon == "nginx"
                                     and p.name is None), W, "")  # matches
    assert monitor.repair_plan(monitor.observations.drifted()) == {"dovecot": {A}}
