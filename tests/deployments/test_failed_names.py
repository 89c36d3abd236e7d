"""The controller's side of one name's failure, as pure functions: what is kept of the agent's
report, and each service name's deployment state in the TLS status."""

from __future__ import annotations

from app.deployments.delivery import failed_names
from app.domains.rules import name_deployment

FP, OLD, OTHER = "a" * 64, "b" * 64, "c" * 64
FAILURE = {
    "name": "mail.a.test",
    "service": "mail",
    "fingerprint": FP,
    "code": "handshake_failed",
    "message": "no TLS handshake is possible with it: NO_SHARED_CIPHER",
    "serving": OLD,
}


def test_failed_names_keeps_the_documented_members_only():
    response = {"status": "applied", "failed_names": [{**FAILURE, "extra": "x"}, "junk", {"x": 1}]}
    assert failed_names(response) == [FAILURE]
    assert failed_names({"status": "applied"}) == []  # an agent from before isolation
    assert failed_names(None) == []
    long = failed_names({"failed_names": [{**FAILURE, "message": "m" * 5000}]})
    assert len(long[0]["message"]) == 1000


def state(service="mail", hostname="mail.a.test", fp=FP, **kw):
    args = {"has_agent": True, "up_to_date": True, "failed_names": [FAILURE]} | kw
    return name_deployment(service, hostname, fp, **args)


def test_the_failing_name_is_failed_with_the_agents_words():
    failed = state()
    assert (failed.state, failed.reason, failed.agent_code) == (
        "failed",
        "deployment_failed",
        "handshake_failed",
    )
    assert failed.message == FAILURE["message"] and failed.serving == OLD
    assert state(up_to_date=False).state == "failed"  # still bound to what failed


def test_other_names_and_services_are_deployed_or_pending():
    assert state(hostname="mail.b.test").state == "deployed"
    assert state(service="webmail", hostname="webmail.a.test").state == "deployed"
    assert state(fp=OTHER).state == "deployed"  # a new certificate was applied since
    assert state(fp=OTHER, up_to_date=False).state == "pending"
    assert state(has_agent=False).state == "no_agent"
