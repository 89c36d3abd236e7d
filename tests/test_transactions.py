"""The request's transaction commits before the response is sent: a failed commit is never a 2xx."""

import httpx
from sqlalchemy import event


async def test_a_commit_failure_is_not_answered_with_success(app, admin, context):
    def refuse(session):
        raise RuntimeError("database went away during commit")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    session_class = context.sessionmaker.kw["sync_session_class"]
    async with httpx.AsyncClient(transport=transport, base_url="http://certpost.test") as client:
        event.listen(session_class, "before_commit", refuse)
        try:
            r = await client.post("/v1/accounts", json={"name": "lost"}, headers=admin)
        finally:
            event.remove(session_class, "before_commit", refuse)
        assert r.status_code == 500, r.text
        assert r.json()["code"] == "internal_error"
        assert (await client.get("/v1/accounts", headers=admin)).json()["items"] == []
