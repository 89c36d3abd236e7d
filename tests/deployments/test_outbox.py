"""The outbox keeps one waiting deployment per server, marks the names a change touched, and a
delivery's delta comes from those names alone (app/deployments/outbox.py, applied.py)."""

from sqlalchemy import func, select

from app.deployments import applied
from app.deployments.delivery import Outcome, _plan, _record
from app.deployments.desired import load_desired
from app.deployments.models import DUE, Deployment, PendingName
from app.kit.digest import config_digest
from app.servers.models import Server
from tests.support.api import create_domain, create_server, upload, upload_body

AGENT = {"agent_url": "https://agent.invalid", "agent_tls_fingerprint": "0" * 64}


async def _waiting(context, server_id) -> list[Deployment]:
    async with context.sessionmaker() as session:
        return list(await session.scalars(
            select(Deployment).where(Deployment.server_id == server_id, Deployment.status.in_(DUE))))


async def _bound_server(client, admin, customer_headers, test_ca, domains: int, **extra):
    server = await create_server(client, admin, **extra)
    account_id, customer = await customer_headers()
    certs = {}
    for i in range(domains):
        name = f"d{i}.test"
        await create_domain(client, admin, name, server["id"], account_id)
        certs[name] = await upload(client, customer, test_ca.issue([f"*.{name}"]))
        for service in ("mail", "webmail"):
            r = await client.put(f"/v1/domains/{name}/bindings/{service}", json={"certificate_id": certs[name]["id"]},
                                 headers=customer)
            assert r.status_code in (200, 201), r.text
    return server, customer, certs


async def _pretend_applied(context, server_id) -> int:
    """Record the current desired document as applied (what a full delivery records)."""
    async with context.sessionmaker() as session:
        server = await session.get(Server, server_id)
        desired = await load_desired(session, server)
        document = desired.document()
        await applied.record_document(session, server_id, document)
        server.applied_digest = config_digest(document)
        server.applied_head = {k: document[k] for k in ("server_hostname", "server_certificate", "webmail_default")}
        server.applied_generation = server.desired_generation
        await applied.clear_pending(session, server_id, server.desired_generation)
        await session.commit()
        return server.desired_generation


async def _plan_now(context, server_id):
    async with context.sessionmaker() as session:
        server = await session.get(Server, server_id)
        return await _plan(session, server, server.desired_generation)


async def test_changes_while_waiting_raise_one_row(client, admin, context, customer_headers, test_ca):
    server, _customer, _certs = await _bound_server(client, admin, customer_headers, test_ca, 3)
    waiting = await _waiting(context, server["id"])
    # Registration, three domains and six bindings: one waiting row carrying all ten changes.
    assert len(waiting) == 1
    current = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"]
    assert waiting[0].generation == current and waiting[0].changes == 10
    # No agent: nothing is due, so no claim ever walks this row.
    assert waiting[0].next_attempt_at is None
    r = await client.patch(f"/v1/servers/{server['id']}", json=AGENT, headers=admin)
    assert r.status_code == 200, r.text
    waiting = await _waiting(context, server["id"])
    assert len(waiting) == 1 and waiting[0].next_attempt_at is not None and waiting[0].changes == 11
    listed = (await client.get(f"/v1/servers/{server['id']}/deployments", headers=admin)).json()["items"]
    assert [(d["status"], d["changes"]) for d in listed] == [("pending", 11)]


async def test_a_delta_is_computed_from_the_marked_names(client, admin, context, customer_headers, test_ca):
    server, customer, certs = await _bound_server(client, admin, customer_headers, test_ca, 4, **AGENT)
    await _pretend_applied(context, server["id"])
    plan = await _plan_now(context, server["id"])
    assert plan.changes == {} and plan.new_fingerprints == set()

    # One rebind: one name, and the one new bundle.
    other = await upload(client, customer, test_ca.issue(["mail.d1.test"]))
    r = await client.put("/v1/domains/d1.test/bindings/mail", json={"certificate_id": other["id"]}, headers=customer)
    assert r.status_code == 200, r.text
    plan = await _plan_now(context, server["id"])
    assert plan.changes == {"mail.d1.test": other["fingerprint_sha256"]}
    assert plan.new_fingerprints == {other["fingerprint_sha256"]}

    # Rebinding back to what is applied: the name was marked, but nothing differs.
    r = await client.put("/v1/domains/d1.test/bindings/mail", json={"certificate_id": certs["d1.test"]["id"]},
                         headers=customer)
    assert (await _plan_now(context, server["id"])).changes == {}

    # Replaced material reaches every name the certificate is bound to.
    renewed = test_ca.issue(["*.d2.test"])
    r = await client.put(f"/v1/certificates/{certs['d2.test']['id']}", json=upload_body(renewed), headers=customer)
    assert r.status_code == 200, r.text
    plan = await _plan_now(context, server["id"])
    assert plan.changes == {"mail.d2.test": renewed.fingerprint, "webmail.d2.test": renewed.fingerprint}

    # A removed domain removes both names; an unbound webmail removes one.
    assert (await client.delete("/v1/domains/d3.test", headers=admin)).status_code == 204
    assert (await client.delete("/v1/domains/d0.test/bindings/webmail", headers=customer)).status_code == 204
    plan = await _plan_now(context, server["id"])
    assert plan.changes == {"mail.d2.test": renewed.fingerprint, "webmail.d2.test": renewed.fingerprint,
                            "mail.d3.test": None, "webmail.d3.test": None, "webmail.d0.test": None}
    assert plan.new_fingerprints == {renewed.fingerprint}


async def test_a_change_during_a_delivery_stays_due(client, admin, context, customer_headers, test_ca):
    """The row is raised in place while the older generation is on its way: the sent generation
    is recorded as applied, the row stays due for the newer one, and only the names marked up to
    the sent generation are cleared."""
    server, customer, certs = await _bound_server(client, admin, customer_headers, test_ca, 2, **AGENT)
    await _pretend_applied(context, server["id"])
    r = await client.put("/v1/domains/d0.test/bindings/webmail", json={"certificate_id": certs["d1.test"]["id"]},
                         headers=customer)
    assert r.status_code == 422  # not covered: refused, nothing marked
    renewed = test_ca.issue(["*.d0.test"])
    await client.put(f"/v1/certificates/{certs['d0.test']['id']}", json=upload_body(renewed), headers=customer)
    plan = await _plan_now(context, server["id"])
    (row,) = await _waiting(context, server["id"])
    async with context.sessionmaker() as session:  # the worker's lease
        s = await session.get(Server, server["id"])
        s.deploy_lease_owner = "w1"
        await session.commit()

    # Meanwhile a customer changes another domain.
    later = test_ca.issue(["*.d1.test"])
    await client.put(f"/v1/certificates/{certs['d1.test']['id']}", json=upload_body(later), headers=customer)

    outcome = Outcome(True, response={"applied_digest": "a" * 64}, generation=plan.generation, head=plan.head,
                      changes=plan.changes)
    await _record(context, server["id"], row.id, "w1", row.created_at, outcome)
    async with context.sessionmaker() as session:
        s = await session.get(Server, server["id"])
        assert s.applied_generation == plan.generation < s.desired_generation
        assert s.applied_digest == "a" * 64
        marked = set(await session.scalars(select(PendingName.hostname).where(PendingName.server_id == s.id)))
        assert marked == {"mail.d1.test", "webmail.d1.test"}
        assert await session.scalar(select(func.count()).select_from(Deployment).where(
            Deployment.server_id == s.id, Deployment.status == "applied")) == 0
    (still,) = await _waiting(context, server["id"])
    assert still.id == row.id and still.generation == s.desired_generation and still.status == "pending"
    plan = await _plan_now(context, server["id"])
    assert plan.changes == {"mail.d1.test": later.fingerprint, "webmail.d1.test": later.fingerprint}


async def test_a_failure_overtaken_by_a_change_is_superseded_not_failed(client, admin, context, customer_headers,
                                                                      test_ca):
    """The agent refused generation G while a change raised the row to G+1: the row stays due for
    G+1 (no `failed` status, no error on it) and the log says G was superseded, with why it failed."""
    from app.deployments.agent_client import AgentError
    from tests.support.api import list_all

    server, customer, certs = await _bound_server(client, admin, customer_headers, test_ca, 1, **AGENT)
    await _pretend_applied(context, server["id"])
    await client.put(f"/v1/certificates/{certs['d0.test']['id']}", json=upload_body(test_ca.issue(["*.d0.test"])),
                     headers=customer)
    plan = await _plan_now(context, server["id"])
    (row,) = await _waiting(context, server["id"])
    async with context.sessionmaker() as session:
        (await session.get(Server, server["id"])).deploy_lease_owner = "w1"
        await session.commit()
    await client.put(f"/v1/certificates/{certs['d0.test']['id']}", json=upload_body(test_ca.issue(["*.d0.test"])),
                     headers=customer)
    refused = AgentError("apply_failed", "postfix refused the configuration", retryable=False,
                         body={"step": "validate", "daemon": "postfix", "rolled_back": True}, status=409)
    await _record(context, server["id"], row.id, "w1", row.created_at,
                  Outcome(False, refused, generation=plan.generation))
    (still,) = await _waiting(context, server["id"])
    assert still.id == row.id and still.generation == plan.generation + 1 and still.last_error is None
    (superseded,) = await list_all(client, "/v1/events", admin, kind="deployment.superseded")
    assert superseded["actor"] == {"type": "worker", "id": "w1", "role": None}
    assert superseded["data"]["generation"] == plan.generation
    assert superseded["data"]["superseded_by"] == plan.generation + 1
    condition = superseded["data"]["condition"]
    assert (condition["code"], condition["step"], condition["details"]["daemon"]) == ("apply_failed", "validate", "postfix")
    assert await list_all(client, "/v1/events", admin, kind="deployment.failed") == []
