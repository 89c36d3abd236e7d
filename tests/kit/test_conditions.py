"""One condition shape (app/kit/conditions.py), and the older stored shapes read as it."""

from datetime import UTC, datetime

from app.kit.conditions import condition, read

AT = datetime(2026, 11, 30, 9, 20, tzinfo=UTC)


def test_a_condition_has_one_shape():
    assert condition("agent_unreachable", "connection refused", at=AT) == {
        "code": "agent_unreachable", "message": "connection refused", "at": "2026-11-30T09:20:00+00:00"}
    full = condition("apply_failed", "postfix refused", at=AT, step="validate",
                     details={"daemon": "postfix", "message": "fatal: …", "status": None})
    assert full["step"] == "validate" and full["details"] == {"daemon": "postfix", "message": "fatal: …"}
    assert read(full) is full


def test_older_rows_are_read_in_the_current_shape():
    order = {"step": "dns_update", "code": "dns_tsig_rejected", "detail": "BADSIG", "problem": None, "timed_out": False}
    assert read(order, at=AT) == {"code": "dns_tsig_rejected", "message": "BADSIG", "step": "dns_update",
                                  "at": "2026-11-30T09:20:00+00:00", "details": {"timed_out": False}}
    agent = {"code": "apply_failed", "detail": "rolled back", "status": 409, "step": "verify", "daemon": "nginx",
             "message": "handshake failed", "rolled_back": True}
    assert read(agent, at=AT)["details"] == {"status": 409, "daemon": "nginx", "message": "handshake failed",
                                             "rolled_back": True}
    assert read({"code": "agent_ahead", "detail": "ahead"}) == {"code": "agent_ahead", "message": "ahead", "at": None}
    assert read(None) is None and read({}) is None
