"""Drift rules (app/drift/rules.py), pure: the agent's answer read defensively, what changed,
when a repair is scheduled, and the ``observed`` entries of a TLS status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.drift import rules

A, B = "a" * 64, "b" * 64
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
GOOD = {"seq": 1, "service": "mail", "name": "mail.a.test", "daemon": "dovecot", "port": 993, "protocol": "imaps",
        "sni": "mail.a.test", "expected": A, "served": B, "error": None, "at": "2026-12-01T03:59:00+00:00"}


def test_parse_keeps_what_a_consumer_needs() -> None:
    seen = rules.parse(GOOD, NOW)
    assert seen.key == ("mail.a.test", "mail", "dovecot", 993) and seen.drifted
    assert seen.at == NOW - timedelta(minutes=1)
    default = rules.parse({**GOOD, "name": None, "served": A}, NOW)
    assert default.hostname == "" and not default.drifted
    unreachable = rules.parse({**GOOD, "served": None, "error": "x" * 2000}, NOW)
    assert unreachable.drifted and len(unreachable.error) == 500
    # An agent's clock ahead, or a time that is not one: the poll's time.
    assert rules.parse({**GOOD, "at": "2030-01-01T00:00:00+00:00"}, NOW).at == NOW
    assert rules.parse({**GOOD, "at": "yesterday"}, NOW).at == NOW


def test_parse_refuses_malformed_entries() -> None:
    for bad in ({"port": "993"}, {"port": 0}, {"port": True}, {"service": "ftp"}, {"daemon": "exim"},
                {"expected": "A" * 64}, {"served": "<script>"}, {"name": ""}, {"name": "x" * 254}, {"name": 5}):
        assert rules.parse({**GOOD, **bad}, NOW) is None, bad
    assert rules.parse(["not", "a", "dict"], NOW) is None


def test_parse_keeps_every_backend_the_agent_verifies() -> None:
    """The HAProxy TLS front's ports (993/995) are probed as daemon ``haproxy``; dropping them
    would hide drift on exactly the ports the front serves."""
    from app.agent.backends.registry import BACKENDS

    for name in BACKENDS:
        seen = rules.parse({**GOOD, "daemon": name}, NOW)
        assert seen is not None and seen.daemon == name, name


def test_changes_report_each_transition_once() -> None:
    drifted, fine = rules.parse(GOOD, NOW), rules.parse({**GOOD, "port": 143, "served": A}, NOW)
    assert rules.changes({}, [drifted, fine]) == ([drifted], [])
    assert rules.changes({drifted.key: True, fine.key: False}, [drifted, fine]) == ([], [])
    back = rules.parse({**GOOD, "served": A}, NOW)
    assert rules.changes({drifted.key: True}, [back]) == ([], [back])


def test_repair_rule() -> None:
    assert rules.repair_due(1, False, None, NOW, 600)
    assert not rules.repair_due(0, False, None, NOW, 600)
    assert not rules.repair_due(2, True, None, NOW, 600)  # a waiting delivery repairs it anyway
    assert not rules.repair_due(2, False, NOW - timedelta(seconds=599), NOW, 600)
    assert rules.repair_due(2, False, NOW - timedelta(seconds=600), NOW, 600)


def test_repairs_of_a_drift_that_stays_back_off_up_to_a_day() -> None:
    """A drift a push cannot mend must not re-deploy the server every ``backoff`` forever: the
    wait doubles with each repair while it stays drifted (10 min, 20, 40, ... a day at most)."""
    ago = lambda s: NOW - timedelta(seconds=s)
    assert rules.repair_due(1, False, ago(600), NOW, 600, repairs=1)
    assert not rules.repair_due(1, False, ago(1199), NOW, 600, repairs=2)
    assert rules.repair_due(1, False, ago(1200), NOW, 600, repairs=2)
    assert not rules.repair_due(1, False, ago(4799), NOW, 600, repairs=4)
    assert not rules.repair_due(1, False, ago(86399), NOW, 600, repairs=50)
    assert rules.repair_due(1, False, ago(86400), NOW, 600, repairs=50)  # capped at a day
    assert rules.repair_due(1, False, NOW, NOW, 0, repairs=9)  # no backoff configured: none


def test_observed_is_judged_against_the_desired_certificate() -> None:
    drifted = rules.parse(GOOD, NOW)
    pending = rules.parse({**GOOD, "port": 143, "protocol": "imap-starttls", "expected": B, "served": B}, NOW)
    out = rules.observed([drifted, pending], desired=A, detail=True)
    assert [(o["port"], o["matches"], o["drifted"]) for o in out] == [(143, False, False), (993, False, True)]
    assert rules.observed([drifted], desired=B, detail=False)[0]["matches"] is True
    assert rules.domain_of("webmail.a.test") == "a.test" and rules.domain_of("") is None
    assert rules.domain_of("mx1.host.test") is None
