"""Drift on real daemons: an administrator swaps a served certificate file behind the agent's back.

Two tenants on one server. After their certificates are deployed, tenant A's bundle copies in
Dovecot's and nginx's directories are overwritten with tenant B's bundle and Dovecot is reloaded
(what an admin copying the wrong file would do). The agent's drift rounds (every half second
here, from its TOML) see Dovecot's four ports and HTTPS present B's certificate for A's names;
the worker's drift poll stores that, so A's TLS status shows ``observed`` != desired on those
ports (Postfix's still match: its table embeds the bundle) while B's matches everywhere, and
records one ``drift.detected`` event per port for A's account; a repair delivery is scheduled,
the agent rewrites the files and reloads, and the status matches again (``drift.resolved``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest
from sqlalchemy import select

from app.drift.models import DriftPoll
from app.events.models import Event
from app.kit.signing import public_key_to_text
from tests.support.api import create_domain, create_server, upload
from tests.support.daemons import running_stack
from tests.support.tlsprobe import served_fingerprint
from tests.support.worker import server_applied, work_until

pytestmark = pytest.mark.daemons

DOVECOT = {"imap-starttls", "imaps", "pop3-starttls", "pop3s"}
POSTFIX = {"smtp-starttls", "smtps"}


@pytest.fixture(scope="module")
def drift_stack(e2e_controller_key):
    with running_stack(public_key_to_text(e2e_controller_key.public_key()), drift_interval=0.5) as pair:
        yield pair


@pytest.fixture
def drift_controller(controller):
    """Poll the agents' observations at every worker round; no automatic repair until a test
    turns it on (``repairing``): a poll that saw some ports drift before the others would
    otherwise repair them before the test looked."""
    settings = controller.settings
    saved = settings.drift_poll_seconds, settings.drift_repair_backoff_seconds, settings.drift_repair
    settings.drift_poll_seconds, settings.drift_repair_backoff_seconds, settings.drift_repair = 0.2, 0, False
    yield controller
    settings.drift_poll_seconds, settings.drift_repair_backoff_seconds, settings.drift_repair = saved


def repairing(controller, client, admin, server_id):
    """Turn automatic repair on; predicate: the repair delivery the next poll schedules, applied."""
    controller.settings.drift_repair = True

    async def check():
        items = (await client.get(f"/v1/servers/{server_id}/deployments", headers=admin)).json()["items"]
        latest = items[0]
        return latest if latest["reason"].startswith("drift repair") and latest["status"] == "applied" else None

    return check


async def tls(client, headers, domain) -> dict:
    r = await client.get(f"/v1/domains/{domain}/tls", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def by_protocol(part: dict) -> dict[str, dict]:
    return {o["protocol"]: o for o in part["observed"]}


def observed_all(client, headers, domain, *, drifted: bool):
    """Predicate: every port observed for the domain's mail and webmail, and drift as asked
    (``drifted``: some Dovecot port drifted; else: every port matches)."""

    async def check():
        status = await tls(client, headers, domain)
        mail, webmail = by_protocol(status["mail"]), by_protocol(status["webmail"])
        if set(mail) != DOVECOT | POSTFIX or set(webmail) != {"https"}:
            return None
        if drifted:
            return status if all(mail[p]["drifted"] for p in DOVECOT) and webmail["https"]["drifted"] else None
        return status if all(o["matches"] and not o["drifted"] for o in [*mail.values(), *webmail.values()]) else None

    return check


async def served(port: int, protocol: str, sni: str) -> str:
    return await asyncio.to_thread(served_fingerprint, "127.0.0.1", port, protocol, sni)


async def test_swapped_file_is_detected_shown_for_its_tenant_only_and_repaired(
    client, admin, drift_controller, drift_stack, test_ca, customer_headers, context
):
    stack, agent = drift_stack
    server = await create_server(client, admin, name="drift", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    tenants = {}
    for domain in ("a.test", "b.test"):
        account_id, headers = await customer_headers()
        await create_domain(client, admin, domain, server["id"], account_id)
        issued = test_ca.issue([f"mail.{domain}", f"webmail.{domain}"])
        cert = await upload(client, headers, issued)
        for service in ("mail", "webmail"):
            r = await client.put(f"/v1/domains/{domain}/bindings/{service}", json={"certificate_id": cert["id"]},
                                 headers=headers)
            assert r.status_code == 201, r.text
        tenants[domain] = (headers, issued.fingerprint, account_id)
    (a_headers, a_fp, a_account), (b_headers, b_fp, _) = tenants["a.test"], tenants["b.test"]
    await work_until(drift_controller, server_applied(client, admin, server["id"]))
    # Observed and matching for both tenants once the agent's rounds and the worker's polls ran.
    await work_until(drift_controller, observed_all(client, a_headers, "a.test", drifted=False))
    await work_until(drift_controller, observed_all(client, b_headers, "b.test", drifted=False))
    applied = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["applied_generation"]

    # The admin's mistake: tenant B's bundle copied over tenant A's in nginx's directory (nginx
    # opens it at each handshake; its files are named by SNI name) and in Dovecot's, with a
    # reload (Dovecot reads it then).
    by_name = stack.out("nginx") / "bundles" / "by-name"
    shutil.copyfile(by_name / "webmail.b.test.pem", by_name / "webmail.a.test.pem")
    bundles = stack.out("dovecot") / "bundles"
    shutil.copyfile(bundles / f"{b_fp}.pem", bundles / f"{a_fp}.pem")
    await asyncio.to_thread(subprocess.run, ["doveadm", "-c", str(stack.dovecot_conf), "reload"], check=True,
                            timeout=30)
    imaps = stack.ports["imaps"]
    for _ in range(100):
        if await served(imaps, "imaps", "mail.a.test") == b_fp:
            break
        await asyncio.sleep(0.1)
    assert await served(imaps, "imaps", "mail.a.test") == b_fp

    # Seen: one worker round's poll stores it (the repair it schedules runs in the next round).
    status = await work_until(drift_controller, observed_all(client, a_headers, "a.test", drifted=True))
    mail = by_protocol(status["mail"])
    assert status["mail"]["certificate"]["fingerprint_sha256"] == a_fp
    for protocol in DOVECOT:
        assert mail[protocol]["daemon"] == "dovecot" and mail[protocol]["fingerprint"] == b_fp
        assert mail[protocol]["matches"] is False and mail[protocol]["drifted"] is True
    for protocol in POSTFIX:  # Postfix's table embeds the bundle: not touched by the swap
        assert mail[protocol]["fingerprint"] == a_fp and mail[protocol]["matches"] is True
    https = by_protocol(status["webmail"])["https"]
    assert https["daemon"] == "nginx" and https["fingerprint"] == b_fp and https["matches"] is False
    # The other tenant matches everywhere.
    other = await tls(client, b_headers, "b.test")
    assert all(o["matches"] and not o["drifted"] for part in ("mail", "webmail") for o in other[part]["observed"])
    async with context.sessionmaker() as session:
        poll = await session.get(DriftPoll, server["id"])
        assert poll.drifted == len(DOVECOT) + 1 and poll.repair_at is None and poll.last_error is None
    # The domain list says which names drifted (the export too).
    rows = (await client.get("/v1/domain-tls", params={"server_id": server["id"]}, headers=admin)).json()["items"]
    assert {(r["domain"], s): r[s]["drifted"] for r in rows for s in ("mail", "webmail")} == {
        ("a.test", "mail"): True, ("a.test", "webmail"): True, ("b.test", "mail"): False, ("b.test", "webmail"): False}
    mine = (await client.get("/v1/domain-tls", headers=b_headers)).json()["items"]
    assert [(r["domain"], r["mail"]["drifted"]) for r in mine] == [("b.test", False)]
    # One drift.detected event per drifted port, the tenant's own (a customer sees its account's).
    detected = await events(context, "drift.detected")
    assert sorted(e.data["protocol"] for e in detected) == sorted([*DOVECOT, "https"])
    for event in detected:
        assert event.account_id == a_account and event.actor_type == "worker"
        assert event.subjects == {"server": server["id"], "domain": "a.test"}
        assert (event.data["host_name"], event.data["daemon"]) in {("mail.a.test", "dovecot"),
                                                                    ("webmail.a.test", "nginx")}
        assert event.data["expected_fingerprint_sha256"] == a_fp
        assert event.data["observed_fingerprint_sha256"] == b_fp
    # The repair: the next poll schedules a delivery, the agent rewrites A's copies, reloads
    # Dovecot and probes again; the poll after it sees it.
    repair = await work_until(drift_controller, repairing(drift_controller, client, admin, server["id"]))
    assert repair["generation"] > applied
    assert await served(imaps, "imaps", "mail.a.test") == a_fp
    status = await work_until(drift_controller, observed_all(client, a_headers, "a.test", drifted=False))
    assert {o["fingerprint"] for part in ("mail", "webmail") for o in status[part]["observed"]} == {a_fp}
    assert await served(stack.ports["https"], "https", "webmail.a.test") == a_fp
    async with context.sessionmaker() as session:
        assert (await session.get(DriftPoll, server["id"])).drifted == 0
    rows = (await client.get("/v1/domain-tls", params={"server_id": server["id"]}, headers=admin)).json()["items"]
    assert not any(r[s]["drifted"] for r in rows for s in ("mail", "webmail"))
    resolved = await events(context, "drift.resolved")
    assert sorted(e.data["protocol"] for e in resolved) == sorted([*DOVECOT, "https"])
    assert {e.account_id for e in resolved} == {a_account}
    assert {e.data["observed_fingerprint_sha256"] for e in resolved} == {a_fp}
    assert len(await events(context, "drift.detected")) == len(DOVECOT) + 1  # nothing new drifted


async def events(context, kind: str) -> list[Event]:
    async with context.sessionmaker() as session:
        return list(await session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


async def test_a_server_wide_file_swapped_in_postfix_is_the_platforms_drift_and_repaired(
    client, admin, drift_controller, drift_stack, test_ca, customer_headers, context
):
    """Postfix's server-wide bundle (what no-SNI clients get) overwritten with a tenant's and
    Postfix reloaded: the no-SNI probes of the two SMTP ports drift, which is nobody's domain (a
    platform event, no account), and the repair writes Postfix's files again."""
    stack, agent = drift_stack
    server = await create_server(client, admin, name="drift-postfix", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    account_id, headers = await customer_headers()
    await create_domain(client, admin, "c.test", server["id"], account_id)
    issued = test_ca.issue(["mail.c.test", "webmail.c.test"])
    cert = await upload(client, headers, issued)
    r = await client.put("/v1/domains/c.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=headers)
    assert r.status_code == 201, r.text
    await work_until(drift_controller, server_applied(client, admin, server["id"]))
    await work_until(drift_controller, observed_all(client, headers, "c.test", drifted=False))
    default = (await client.get(f"/v1/certificates/{server['mail_certificate_id']}", headers=admin)).json()
    smtps = stack.ports["smtps"]
    assert await served(smtps, "smtps", None) == default["fingerprint_sha256"]

    postfix = stack.out("postfix")
    shutil.copyfile(postfix / "bundles" / f"{issued.fingerprint}.pem", postfix / "default.pem")
    await asyncio.to_thread(subprocess.run, ["postfix", "-c", f"{stack.postfix_dir}/etc", "reload"], check=True,
                            timeout=30)

    async def platform_drift():
        found = await events(context, "drift.detected")
        return found if len(found) == len(POSTFIX) else None

    detected = await work_until(drift_controller, platform_drift)
    assert {e.data["protocol"] for e in detected} == POSTFIX
    for event in detected:
        assert event.account_id is None and event.subjects == {"server": server["id"]}
        assert event.data["host_name"] is None and event.data["daemon"] == "postfix"
        assert event.data["observed_fingerprint_sha256"] == issued.fingerprint
    # The tenant's own name still matches everywhere: its status shows no drift.
    assert not any(o["drifted"] for o in (await tls(client, headers, "c.test"))["mail"]["observed"])

    await work_until(drift_controller, repairing(drift_controller, client, admin, server["id"]))

    async def repaired():
        return await events(context, "drift.resolved") or None

    resolved = await work_until(drift_controller, repaired)
    assert {e.data["protocol"] for e in resolved} == POSTFIX
    assert await served(smtps, "smtps", None) == default["fingerprint_sha256"]
