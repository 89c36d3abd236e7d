"""The per-process token cache (app.accounts.token_cache): a revoked token is refused at once by
the process that revoked it, and by another process within ``token_cache_seconds``.

"Another process" is a second application over the same database with its own AppContext
(its own cache), as a second `certpost serve` has; the revocation goes through the first one's
API and, separately, through `certpost tokens revoke`'s service call with no cache at all.
"""

import httpx
import pytest

from app.accounts.caller import OPERATOR
from app.accounts.repository import AccountRepository
from app.accounts.service import AccountService
from app.accounts.token_cache import TokenCache, token_key
from app.context import AppContext
from app.main import create_app
from tests.support.api import assert_problem


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
async def other_process(settings):
    """A second application over the same database: its own context, so its own token cache,
    with a clock the test moves."""
    ctx = AppContext.build(settings)
    clock = Clock()
    ctx._tokens = TokenCache(settings.token_cache_seconds, clock=clock)
    app = create_app(context=ctx, run_worker=False)
    app.state.ctx = ctx
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://certpost.test") as c:
        yield c, clock
    await ctx.close()


async def _new_token(client, admin, role="admin") -> tuple[str, dict]:
    r = await client.post("/v1/tokens", json={"role": role}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}


async def test_revoked_at_once_in_the_revoking_process(client, admin, context):
    token_id, headers = await _new_token(client, admin)
    assert (await client.get("/v1/certificates", headers=headers)).status_code == 200
    key = token_key(headers["Authorization"].removeprefix("Bearer "))
    assert context.token_cache().get(key) is not None  # it was remembered
    assert (await client.delete(f"/v1/tokens/{token_id}", headers=admin)).status_code == 204
    assert context.token_cache().get(key) is None
    assert_problem(await client.get("/v1/certificates", headers=headers), 401, "unauthenticated")
    # A token may revoke itself, and is refused from the next request on.
    own_id, own = await _new_token(client, admin)
    assert (await client.delete(f"/v1/tokens/{own_id}", headers=own)).status_code == 204
    assert_problem(await client.get("/v1/certificates", headers=own), 401, "unauthenticated")


async def test_revoked_elsewhere_refused_within_the_ttl(client, admin, context, other_process, settings):
    other, clock = other_process
    token_id, headers = await _new_token(client, admin)
    assert (await other.get("/v1/certificates", headers=headers)).status_code == 200  # cached there
    # Revoked through the first process's API, then through the CLI's path (no cache at all).
    assert (await client.delete(f"/v1/tokens/{token_id}", headers=admin)).status_code == 204
    assert_problem(await client.get("/v1/certificates", headers=headers), 401, "unauthenticated")
    clock.now += settings.token_cache_seconds / 2
    assert (await other.get("/v1/certificates", headers=headers)).status_code == 200  # the documented delay
    clock.now += settings.token_cache_seconds / 2
    assert_problem(await other.get("/v1/certificates", headers=headers), 401, "unauthenticated")

    second_id, second = await _new_token(client, admin)
    assert (await other.get("/v1/certificates", headers=second)).status_code == 200
    async with context.sessionmaker() as session:
        await AccountService(AccountRepository(session)).revoke_token(second_id, caller=OPERATOR)
        await session.commit()
    clock.now += settings.token_cache_seconds
    assert_problem(await other.get("/v1/certificates", headers=second), 401, "unauthenticated")


async def test_failures_are_not_cached_and_keys_are_hashes(client, admin, context):
    cache = context.token_cache()
    cache.clear()
    for _ in range(2):
        assert_problem(await client.get("/v1/certificates", headers={"Authorization": "Bearer cpt_" + "0" * 36 + "_x"}),
                       401, "unauthenticated")
    assert len(cache) == 0
    _, headers = await _new_token(client, admin)
    await client.get("/v1/certificates", headers=headers)
    token = headers["Authorization"].removeprefix("Bearer ")
    assert all(isinstance(k, bytes) and len(k) == 32 and token.encode() not in k for k in cache._entries)


def test_cache_is_bounded_and_expires():
    clock = Clock()
    cache = TokenCache(5, size=3, clock=clock)
    callers = [OPERATOR.__class__(token_id=str(i), role="admin", account_id=None) for i in range(4)]
    for i, c in enumerate(callers):
        cache.put(bytes([i]), c, cache.epoch)
    assert len(cache) == 3 and cache.get(bytes([0])) is None  # least recently used went first
    epoch = cache.epoch
    cache.invalidate_token("1")
    cache.put(bytes([1]), callers[1], epoch)  # a lookup that began before the revocation
    assert cache.get(bytes([1])) is None
    clock.now += 5
    assert cache.get(bytes([2])) is None
    assert TokenCache(0).enabled is False
