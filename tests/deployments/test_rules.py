"""Pure policies: retry backoff, renewal due, configuration digest."""

import random
from datetime import UTC, datetime, timedelta

from app.acme.renewal import renewal_due
from app.deployments.policy import retry_delay
from app.kit.digest import config_digest, config_digest_v1


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    for attempts, bound in ((1, 5), (2, 10), (3, 20), (4, 40)):
        for _ in range(50):
            delay = retry_delay(attempts, base=5, cap=600, rng=rng)
            assert bound / 2 <= delay <= bound
    assert all(retry_delay(30, base=5, cap=600, rng=rng) <= 600 for _ in range(50))
    assert len({round(retry_delay(3, base=5, cap=600, rng=rng), 3) for _ in range(20)}) > 10  # jittered


def test_renewal_due():
    now = datetime(2026, 11, 28, tzinfo=UTC)
    past, future = now - timedelta(hours=1), now + timedelta(hours=1)
    assert renewal_due(past, "scheduled", None, now)
    assert renewal_due(past, None, None, now)
    assert not renewal_due(future, "scheduled", None, now)
    assert not renewal_due(None, None, None, now)
    assert not renewal_due(past, "renewing", None, now)  # at most one at a time
    assert not renewal_due(past, "failed", future, now)  # backing off
    assert renewal_due(past, "failed", past, now)


def test_config_digest_ignores_generation_bundles_and_key_order():
    doc = {"generation": 3, "server_hostname": "mx", "mail": {"b": "2", "a": "1"}, "webmail": {}}
    same = {"webmail": {}, "mail": {"a": "1", "b": "2"}, "server_hostname": "mx", "generation": 9,
            "bundles": {"x": {}}}
    assert config_digest(doc) == config_digest(same)
    assert config_digest(doc) != config_digest({**doc, "mail": {"a": "1"}})
    assert config_digest_v1(doc) == config_digest_v1(same) != config_digest_v1({**doc, "mail": {"a": "1"}})
