"""The configuration digest (app.kit.digest): version 2 is a set hash that a delta updates in
O(changed entries) and that must equal a from-scratch computation, on controller and agent."""

from __future__ import annotations

import random

from app.kit.digest import (
    MODULUS,
    config_digest,
    config_digest_v1,
    digest_for,
    digest_of,
    entry_hash,
    maps_sum,
    scalars,
    updated_sum,
)

A, B, C = "a" * 64, "b" * 64, "c" * 64
DOC = {"generation": 3, "server_hostname": "mx.test", "server_certificate": A, "webmail_default": A,
       "mail": {"mail.x.test": B, "mail.y.test": C}, "webmail": {"webmail.x.test": B}}


def test_order_generation_and_bundles_do_not_count() -> None:
    shuffled = {"webmail": {"webmail.x.test": B}, "mail": {"mail.y.test": C, "mail.x.test": B},
                "webmail_default": A, "server_certificate": A, "server_hostname": "mx.test",
                "generation": 9, "bundles": {B: {}}}
    assert config_digest(DOC) == config_digest(shuffled)
    assert len(config_digest(DOC)) == 64 and config_digest(DOC) != config_digest_v1(DOC)


def test_every_part_counts() -> None:
    base = config_digest(DOC)
    assert config_digest({**DOC, "mail": {"mail.x.test": B}}) != base
    assert config_digest({**DOC, "mail": {"mail.x.test": C, "mail.y.test": C}}) != base
    assert config_digest({**DOC, "server_certificate": B}) != base
    # The same entry under another field is another element.
    assert config_digest({**DOC, "mail": {}, "webmail": {**DOC["webmail"], **DOC["mail"]}}) != base
    # An empty map and a missing one are the same (a controller without autoconfig).
    assert config_digest({**DOC, "autoconfig": {}}) == base


def test_entries_are_unambiguous() -> None:
    assert entry_hash("mail", "ab", "c") != entry_hash("mail", "a", "bc")
    assert 0 <= entry_hash("mail", "a", "b") < MODULUS


def test_a_chain_of_deltas_ends_where_a_fresh_computation_does() -> None:
    rng = random.Random(8)
    document = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DOC.items()}
    total = maps_sum(document)
    for _ in range(200):
        field = rng.choice(["mail", "webmail", "autoconfig"])
        current = document.setdefault(field, {})
        name = f"{field}.d{rng.randrange(20)}.test"
        value = rng.choice([None, A, B, C])
        total = updated_sum(total, field, current, {name: value})
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value
        assert digest_of(scalars(document), total) == config_digest(document)


def test_digest_for_follows_the_agents_features() -> None:
    assert digest_for(["delta-config", "set-digest"], DOC) == config_digest(DOC)
    assert digest_for(["delta-config"], DOC) == config_digest_v1(DOC)
    assert digest_for(None, DOC) == config_digest_v1(DOC)
