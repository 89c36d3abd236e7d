"""Enrolment tokens through the API (issue 10): single use, expiry, withdrawal, concurrent use,
and nothing changed by a refusal. The command that spends them is in test_enrol_command.py."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from app.enrolment.models import EnrolmentToken
from app.kit.time import utc_now
from tests.support.api import create_server

FP = "ab" * 32


async def _token(client, admin, server_id, **body):
    response = await client.post(f"/v1/servers/{server_id}/enrolment-tokens", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def _enrol(client, token, url="https://mx1.hosting.test:8750", fingerprint=FP):
    return client.post("/v1/agent-enrolments",
                       json={"token": token, "agent_url": url, "agent_tls_fingerprint": fingerprint})


async def test_a_token_enrols_once(client, admin, context):
    server = await create_server(client, admin)
    made = await _token(client, admin, server["id"], description="mx1 install")
    assert made["token"].startswith("cpe_") and made["controller_tls_fingerprint"] is None
    assert made["command"].startswith("certpost agent enroll --controller http://certpost.test --token cpe_")
    seconds = (parse(made["expires_at"]) - parse(made["created_at"])).total_seconds()
    assert seconds == 3600

    response = await _enrol(client, made["token"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["server_id"] == server["id"] and body["server_hostname"] == "mx1.hosting.test"
    assert body["controller_public_key"].startswith("ed25519:")
    got = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
    assert got["agent_url"] == "https://mx1.hosting.test:8750" and got["agent_tls_fingerprint"] == FP
    deployments = (await client.get(f"/v1/servers/{server['id']}/deployments", headers=admin)).json()["items"]
    assert deployments and deployments[0]["status"] == "pending"  # the agent gets the configuration

    again = await _enrol(client, made["token"], url="https://evil.test:8750")
    assert again.status_code == 403 and again.json()["code"] == "enrolment_token_used"
    got = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
    assert got["agent_url"] == "https://mx1.hosting.test:8750"
    async with context.sessionmaker() as session:  # the token itself is not stored, only its hash
        row = await session.get(EnrolmentToken, made["id"])
        assert made["token"].rsplit("_", 1)[1] not in (row.secret_hash or "") and len(row.secret_hash) == 64


def parse(text):
    from datetime import datetime

    return datetime.fromisoformat(text)


async def test_expired_withdrawn_and_wrong_tokens(client, admin, context, customer_headers):
    server = await create_server(client, admin)
    expired = await _token(client, admin, server["id"], expires_in=60)
    async with context.sessionmaker() as session:
        await session.execute(update(EnrolmentToken).where(EnrolmentToken.id == expired["id"])
                              .values(expires_at=utc_now()))
        await session.commit()
    response = await _enrol(client, expired["token"])
    assert response.status_code == 403 and response.json()["code"] == "enrolment_token_expired"

    withdrawn = await _token(client, admin, server["id"])
    path = f"/v1/servers/{server['id']}/enrolment-tokens/{withdrawn['id']}"
    assert (await client.delete(path, headers=admin)).status_code == 204
    assert (await _enrol(client, withdrawn["token"])).json()["code"] == "enrolment_token_invalid"

    good = await _token(client, admin, server["id"])
    altered = good["token"][:-2] + ("AA" if not good["token"].endswith("AA") else "BB")
    for token in (altered, "cpt_" + good["token"][4:], "nonsense"):
        response = await _enrol(client, token)
        assert response.status_code == 403 and response.json()["code"] == "enrolment_token_invalid", token
    bad_url = await _enrol(client, good["token"], url="http://mx1.hosting.test:8750")
    assert bad_url.status_code == 422 and bad_url.json()["code"] == "invalid_agent_url"
    got = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
    assert got["agent_url"] is None  # no refusal changed anything ...
    assert (await _enrol(client, good["token"])).status_code == 200  # ... nor spent the token

    _account, customer = await customer_headers()
    refused = await client.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={}, headers=customer)
    assert refused.status_code == 403
    missing = await client.post("/v1/servers/nope/enrolment-tokens", json={}, headers=admin)
    assert missing.status_code == 404
    short = await client.post(f"/v1/servers/{server['id']}/enrolment-tokens", json={"expires_in": 5}, headers=admin)
    assert short.status_code == 422


async def test_two_agents_racing_for_one_token(client, admin):
    """Both requests run at once, each in its own transaction: exactly one wins. (Both read the
    unused token before either spends it, so the loser is refused by the conditional UPDATE,
    "used by another request meanwhile": seen on SQLite and PostgreSQL.)"""
    server = await create_server(client, admin)
    for round_ in range(3):
        made = await _token(client, admin, server["id"])
        urls = [f"https://a{round_}.hosting.test:8750", f"https://b{round_}.hosting.test:8750"]
        answers = await asyncio.gather(*(_enrol(client, made["token"], url=u) for u in urls))
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 403], [r.text for r in answers]
        loser = next(r for r in answers if r.status_code == 403)
        assert loser.json()["code"] == "enrolment_token_used"
        winner = next(r for r in answers if r.status_code == 200).json()["agent_url"]
        got = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()
        assert got["agent_url"] == winner


async def test_one_agent_cannot_be_enrolled_for_two_servers(client, admin):
    """An agent already registered for mx1 presenting a token for mx2 (a token pasted on the wrong
    machine) is refused: both servers' configurations would be pushed to the same daemons, each
    replacing the other's certificates. The token stays usable for the right agent."""
    mx1 = await create_server(client, admin)
    mx2 = await create_server(client, admin, name="mx2", hostname="mx2.hosting.test")
    first = await _token(client, admin, mx1["id"])
    assert (await _enrol(client, first["token"])).status_code == 200

    second = await _token(client, admin, mx2["id"])
    refused = await _enrol(client, second["token"], url="https://mx2.hosting.test:8750")
    assert refused.status_code == 409 and refused.json()["code"] == "agent_already_enrolled", refused.text
    assert mx1["id"] in refused.json()["detail"] and second["token"] not in refused.text
    got = (await client.get(f"/v1/servers/{mx2['id']}", headers=admin)).json()
    assert got["agent_url"] is None and got["agent_tls_fingerprint"] is None

    # Re-enrolling the same server with the same identity is fine (a reinstall of mx1's agent).
    again = await _token(client, admin, mx1["id"])
    assert (await _enrol(client, again["token"])).status_code == 200
    # The right agent spends mx2's token.
    assert (await _enrol(client, second["token"], url="https://mx2.hosting.test:8750",
                         fingerprint="cd" * 32)).status_code == 200
