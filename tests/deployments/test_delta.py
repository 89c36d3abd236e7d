"""Delta documents: what changed between the applied and the desired configuration, checked
against the agent's own reading of a delta (``app.agent.desired.DesiredDelta.resolve``)."""

from app.agent.desired import DesiredDelta
from app.deployments.delta import delta_body, name_changes
from app.kit.digest import config_digest

A1, A2, B1, C1, S1, S2, D1 = (c * 64 for c in "1234567")
APPLIED = {
    "generation": 4, "server_hostname": "mx.hosting.test", "server_certificate": S1, "webmail_default": D1,
    "mail": {"mail.a.test": A1, "mail.b.test": B1}, "webmail": {"webmail.a.test": A1},
}


def delta_document(applied: dict, desired: dict) -> dict:
    """The delta the controller sends, built from two whole documents: every name of either is
    a changed candidate (the controller marks only touched names), plus the result's digest."""
    old = {**applied.get("mail", {}), **applied.get("webmail", {})}
    new = {**desired.get("mail", {}), **desired.get("webmail", {})}
    wanted: dict[str, str | None] = {name: None for name in old.keys() - new.keys()}
    wanted.update(new)
    body = delta_body(desired["generation"], config_digest(applied), desired, name_changes(old, wanted))
    return {**body, "digest": config_digest(desired)}


def resolved(delta: dict) -> dict:
    return DesiredDelta.model_validate(delta).resolve(APPLIED).without_bundles()


def test_only_changed_names_travel():
    desired = {**APPLIED, "generation": 5, "mail": {"mail.a.test": A2, "mail.c.test": C1}}
    delta = delta_document(APPLIED, desired)
    assert delta["mail_changes"] == {"mail.a.test": A2, "mail.b.test": None, "mail.c.test": C1}
    assert delta["webmail_changes"] == {}
    assert delta["base_digest"] == config_digest(APPLIED) and delta["digest"] == config_digest(desired)
    assert "mail" not in delta and "webmail" not in delta
    assert config_digest(resolved(delta)) == delta["digest"]


def test_the_agent_rebuilds_the_desired_document():
    desired = {**APPLIED, "generation": 6, "server_certificate": S2, "webmail": {}}
    assert config_digest(resolved(delta_document(APPLIED, desired))) == config_digest(desired)


def test_no_change_is_an_empty_delta():
    delta = delta_document(APPLIED, {**APPLIED, "generation": 7})
    assert delta["mail_changes"] == {} == delta["webmail_changes"]
    assert delta["base_digest"] == delta["digest"]
