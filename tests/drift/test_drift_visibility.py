"""The agent's probe error text names the addresses it dialled: a customer token reads a stable
`error_code` and a generic sentence (TLS status `observed`, drift events, an account's webhooks);
an admin token the agent's own words (app/drift/rules.py ``probe_error``)."""

from __future__ import annotations

from sqlalchemy import select

from app.accounts.caller import Caller
from app.drift.poll import _store
from app.drift.repository import DriftRepository
from app.drift.rules import PROBE_ERRORS, probe_error_code
from app.events.models import Event
from app.kit.time import utc_now
from app.webhooks.feed import payload_data
from tests.support.api import create_domain, create_server, list_all
from tests.support.ports import free_port

REFUSED = "10.9.8.7:993 (imaps): [Errno 111] Connection refused"
HANDSHAKE = "TLS handshake with 10.9.8.7:465 (smtps, SNI mail.shop.test) failed: [SSL] record layer failure"


def test_each_kind_of_probe_error_has_its_code():
    assert probe_error_code(None) is None and probe_error_code("") is None
    assert probe_error_code(REFUSED) == "connection_failed"
    assert probe_error_code(HANDSHAKE) == "tls_handshake_failed"
    assert probe_error_code("10.9.8.7:25 presented no certificate") == "no_certificate"
    assert probe_error_code("SMTP STARTTLS refused: '454 TLS not available'") == "starttls_failed"
    assert probe_error_code("unexpected SMTP reply '220-mx.internal'") == "starttls_failed"
    assert probe_error_code("something new") == "probe_failed"
    assert all(code in PROBE_ERRORS for code in ("connection_failed", "tls_handshake_failed", "probe_failed"))


async def test_customers_read_a_generic_probe_error_and_admins_the_agents_words(client, admin, context,
                                                                                customer_headers):
    server = await create_server(client, admin, name="mx", hostname="mx.host.test",
                                 agent_url=f"https://127.0.0.1:{free_port()}", agent_tls_fingerprint="0" * 64)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "shop.test", server["id"], account_id)
    async with context.sessionmaker() as session:
        await DriftRepository(session).claim(utc_now(), 60, 10)
        await session.commit()
    at = utc_now().isoformat()
    items = [
        {"service": "mail", "name": None, "daemon": "dovecot", "port": 993, "protocol": "imaps",
         "expected": "a" * 64, "served": None, "error": REFUSED, "at": at},
        {"service": "mail", "name": "mail.shop.test", "daemon": "postfix", "port": 465, "protocol": "smtps",
         "expected": "a" * 64, "served": None, "error": HANDSHAKE, "at": at},
    ]
    await _store(context, Caller.for_worker("test-worker"), server["id"], "e1", 1, items)

    as_customer = await client.get("/v1/domains/shop.test/tls", headers=customer)
    assert as_customer.status_code == 200, as_customer.text
    [port] = as_customer.json()["mail"]["observed"]
    assert (port["error_code"], port["error"]) == ("connection_failed", PROBE_ERRORS["connection_failed"])
    assert "10.9.8.7" not in as_customer.text
    [port] = (await client.get("/v1/domains/shop.test/tls", headers=admin)).json()["mail"]["observed"]
    assert (port["error_code"], port["error"]) == ("connection_failed", REFUSED)

    [seen] = await list_all(client, "/v1/events", customer, kind="drift.detected")
    assert seen["data"]["error_code"] == "tls_handshake_failed"
    assert seen["data"]["error"] == PROBE_ERRORS["tls_handshake_failed"]
    assert "10.9.8.7" not in (await client.get(f"/v1/events/{seen['id']}", headers=customer)).text
    full = {e["id"]: e for e in await list_all(client, "/v1/events", admin, kind="drift.detected")}
    assert full[seen["id"]]["data"]["error"] == HANDSHAKE and len(full) == 2  # the no-SNI one is the platform's

    async with context.sessionmaker() as session:
        row = await session.scalar(select(Event).where(Event.id == seen["id"]))
    assert payload_data(row, detail=False)["error"] == PROBE_ERRORS["tls_handshake_failed"]  # an account's webhook
    assert payload_data(row, detail=True)["error"] == HANDSHAKE  # a platform webhook
