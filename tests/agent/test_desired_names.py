"""The agent accepts only names the controller's validator (app/kit/names.py) produced."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.agent.challenges import ChallengeIn
from app.agent.desired import Desired, DesiredDelta

FP = "a" * 64


def _desired(**maps):
    return {
        "generation": 1,
        "server_hostname": "mx.example.test",
        "server_certificate": FP,
        "webmail_default": FP,
        **maps,
    }


@pytest.mark.parametrize(
    "name",
    ["evil.test\n", "evil\n.test", "Mail.example.test", "example.test.", "xn--zz.test",
     "faß.test", "a_b.test", "a b.test", "exa\x00mple.test", "a.*.test"],
)
def test_agent_refuses_what_the_controller_would_not_produce(name):
    with pytest.raises(ValidationError):
        Desired.model_validate(_desired(mail={name: FP}))
    with pytest.raises(ValidationError):
        Desired.model_validate(_desired(webmail={name: FP}))
    delta = {**_desired(), "base_digest": FP, "digest": FP}
    for value in (FP, None):
        with pytest.raises(ValidationError):
            DesiredDelta.model_validate({**delta, "mail_changes": {name: value}})
    with pytest.raises(ValidationError):
        ChallengeIn.model_validate({"key_authorization": "t.k", "names": [name]})


@pytest.mark.parametrize("name", ["mail.example.test", "xn--fa-hia.test", "*.example.test"])
def test_agent_accepts_canonical_names(name):
    assert Desired.model_validate(_desired(mail={name: FP})).mail == {name: FP}


def test_fingerprint_with_a_final_newline_is_refused():
    with pytest.raises(ValidationError):
        Desired.model_validate({**_desired(), "server_certificate": FP + "\n"})
