"""Delta documents: what changed between the applied and the desired configuration."""

from app.deployments.delta import apply_delta, delta_document
from app.kit.digest import config_digest

APPLIED = {
    "generation": 4, "server_hostname": "mx", "server_certificate": "s1", "webmail_default": "d1",
    "mail": {"mail.a.test": "a1", "mail.b.test": "b1"}, "webmail": {"webmail.a.test": "a1"},
}


def test_only_changed_names_travel():
    desired = {**APPLIED, "generation": 5, "mail": {"mail.a.test": "a2", "mail.c.test": "c1"}}
    delta = delta_document(APPLIED, desired)
    assert delta["mail_changes"] == {"mail.a.test": "a2", "mail.b.test": None, "mail.c.test": "c1"}
    assert delta["webmail_changes"] == {}
    assert delta["base_digest"] == config_digest(APPLIED) and delta["digest"] == config_digest(desired)
    assert "mail" not in delta and "webmail" not in delta


def test_round_trip_restores_the_desired_document():
    desired = {**APPLIED, "generation": 6, "server_certificate": "s2", "webmail": {}}
    rebuilt = apply_delta(APPLIED, delta_document(APPLIED, desired))
    assert config_digest(rebuilt) == config_digest(desired)


def test_no_change_is_an_empty_delta():
    delta = delta_document(APPLIED, {**APPLIED, "generation": 7})
    assert delta["mail_changes"] == {} == delta["webmail_changes"]
    assert delta["base_digest"] == delta["digest"]
