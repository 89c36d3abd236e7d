"""A server's webmail default certificate (PUT/DELETE /v1/servers/{id}/webmail-certificate).

What HTTPS presents without SNI, for the server's host name and for every webmail name without
a binding: the chosen certificate, else the server-wide mail certificate. The rules are those of
the server-wide mail certificate: administrators only, a platform certificate, in date, covering
the host name; warnings as a binding gives them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api import assert_problem, create_domain, create_server, upload, upload_body

HOST = "mx1.hosting.test"


@pytest.fixture
async def hosted(client, admin, customer_headers):
    server = await create_server(client, admin, hostname=HOST)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    return await get_server(client, admin, server["id"]), account_id, customer


async def put_webmail(client, headers, server_id, cert_id):
    return await client.put(f"/v1/servers/{server_id}/webmail-certificate", json={"certificate_id": cert_id},
                            headers=headers)


async def get_server(client, admin, server_id) -> dict:
    return (await client.get(f"/v1/servers/{server_id}", headers=admin)).json()


async def preview(client, admin, server_id) -> dict:
    return (await client.get(f"/v1/servers/{server_id}/config", headers=admin)).json()


async def webmail_status(client, customer, domain="a.test") -> dict:
    return (await client.get(f"/v1/domains/{domain}/tls", headers=customer)).json()["webmail"]


async def test_default_follows_the_server_wide_mail_certificate(client, admin, test_ca, hosted):
    server, _account, customer = hosted
    assert server["webmail_certificate_id"] is None
    assert server["webmail_default_certificate_id"] == server["mail_certificate_id"] == server["default_certificate_id"]

    trusted = await upload(client, admin, test_ca.issue([HOST]))
    r = await client.put(f"/v1/servers/{server['id']}/mail-certificate", json={"certificate_id": trusted["id"]},
                         headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["webmail_certificate_id"] is None
    assert r.json()["webmail_default_certificate_id"] == trusted["id"]
    config = await preview(client, admin, server["id"])
    assert config["webmail_default"] == config["server_certificate"] == trusted["fingerprint_sha256"]
    status = await webmail_status(client, customer)
    assert status["source"] == "server-default" and status["certificate"]["id"] == trusted["id"]
    assert status["reasons"] == ["hostname_not_covered"]  # trusted, but for the host name only


async def test_set_change_and_unset(client, admin, test_ca, untrusted_ca, hosted):
    server, _account, customer = hosted
    start = server["desired_generation"]
    chosen = await upload(client, admin, test_ca.issue([HOST, "webmail.hosting.test"]))
    r = await put_webmail(client, admin, server["id"], chosen["id"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["certificate_warnings"] == []
    assert body["webmail_certificate_id"] == body["webmail_default_certificate_id"] == chosen["id"]
    assert body["mail_certificate_id"] == server["mail_certificate_id"]  # mail is not touched
    assert body["desired_generation"] == start + 1
    config = await preview(client, admin, server["id"])
    assert config["webmail_default"] == chosen["fingerprint_sha256"]
    assert config["server_certificate"] != chosen["fingerprint_sha256"]
    status = await webmail_status(client, customer)
    assert status["source"] == "server-default" and status["certificate"]["id"] == chosen["id"]
    bindings = (await client.get("/v1/domains/a.test/bindings", headers=customer)).json()
    assert bindings["webmail"]["source"] == "server-default" and bindings["webmail"]["certificate_id"] == chosen["id"]
    assert bindings["mail"]["certificate_id"] == server["mail_certificate_id"]
    cert = (await client.get(f"/v1/certificates/{chosen['id']}", headers=admin)).json()
    assert [(b["kind"], b["hostname"], b["server_id"]) for b in cert["bindings"]] == [
        ("server-webmail", HOST, server["id"])
    ]

    # The same again changes nothing; another certificate is a new generation, with its warnings.
    r = await put_webmail(client, admin, server["id"], chosen["id"])
    assert r.status_code == 200 and r.json()["desired_generation"] == start + 1
    untrusted = await upload(client, admin, untrusted_ca.issue([HOST], days=10))
    r = await put_webmail(client, admin, server["id"], untrusted["id"])
    assert r.status_code == 200, r.text
    assert [w["code"] for w in r.json()["certificate_warnings"]] == ["certificate_untrusted", "certificate_expiring"]
    assert r.json()["desired_generation"] == start + 2
    assert (await preview(client, admin, server["id"]))["webmail_default"] == untrusted["fingerprint_sha256"]

    # Back to the default: the server-wide mail certificate.
    r = await client.delete(f"/v1/servers/{server['id']}/webmail-certificate", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["webmail_certificate_id"] is None
    assert r.json()["webmail_default_certificate_id"] == server["mail_certificate_id"]
    assert r.json()["desired_generation"] == start + 3
    config = await preview(client, admin, server["id"])
    assert config["webmail_default"] == config["server_certificate"]
    assert (await webmail_status(client, customer))["certificate"]["id"] == server["mail_certificate_id"]
    assert_problem(await client.delete(f"/v1/servers/{server['id']}/webmail-certificate", headers=admin),
                   404, "webmail_certificate_not_set")
    # The certificates stay, and are deletable again.
    assert (await client.delete(f"/v1/certificates/{untrusted['id']}", headers=admin)).status_code == 204


async def test_choosing_the_mail_certificate_itself_deploys_nothing_new(client, admin, hosted):
    server, _account, _customer = hosted
    r = await put_webmail(client, admin, server["id"], server["mail_certificate_id"])
    assert r.status_code == 200, r.text
    assert [w["code"] for w in r.json()["certificate_warnings"]] == ["self_signed"]
    assert r.json()["webmail_certificate_id"] == server["mail_certificate_id"]
    assert r.json()["desired_generation"] == server["desired_generation"]  # the same certificate is served
    r = await client.delete(f"/v1/servers/{server['id']}/webmail-certificate", headers=admin)
    assert r.status_code == 200 and r.json()["desired_generation"] == server["desired_generation"]


async def test_refusals(client, admin, test_ca, hosted):
    server, account_id, customer = hosted
    start = server["desired_generation"]
    good = await upload(client, admin, test_ca.issue([HOST]))
    # Administrators only, to set and to unset.
    assert_problem(await put_webmail(client, customer, server["id"], good["id"]), 403, "forbidden")
    assert_problem(await client.delete(f"/v1/servers/{server['id']}/webmail-certificate", headers=customer),
                   403, "forbidden")
    assert_problem(await put_webmail(client, admin, server["id"], "00000000-0000-0000-0000-000000000000"),
                   404, "not_found")
    assert_problem(await put_webmail(client, admin, "00000000-0000-0000-0000-000000000000", good["id"]),
                   404, "not_found")
    # A customer's certificate, even one for the host name, never becomes a server default.
    theirs = await upload(client, customer, test_ca.issue([HOST, "webmail.a.test"]))
    body = assert_problem(await put_webmail(client, admin, server["id"], theirs["id"]), 422, "certificate_not_platform")
    assert account_id not in body["detail"]
    other = await upload(client, admin, test_ca.issue([HOST]), account_id=account_id)
    assert_problem(await put_webmail(client, admin, server["id"], other["id"]), 422, "certificate_not_platform")
    # It is presented for the host name, so it must cover it (a webmail name is not enough).
    webmail_only = await upload(client, admin, test_ca.issue(["webmail.a.test"]))
    body = assert_problem(await put_webmail(client, admin, server["id"], webmail_only["id"]), 422,
                          "hostname_not_covered")
    assert body["hostname"] == HOST
    now = datetime.now(UTC)
    expired = await upload(client, admin, test_ca.issue([HOST], not_before=now - timedelta(days=100),
                                                        not_after=now - timedelta(days=1)))
    assert_problem(await put_webmail(client, admin, server["id"], expired["id"]), 422, "certificate_expired")
    r = await client.put(f"/v1/servers/{server['id']}/webmail-certificate", json={"id": good["id"]}, headers=admin)
    assert_problem(r, 422, "validation_error")
    after = await get_server(client, admin, server["id"])
    assert after["webmail_certificate_id"] is None and after["desired_generation"] == start


async def test_in_use_certificate_is_kept_and_replaced_with_care(client, admin, test_ca, hosted):
    server, _account, _customer = hosted
    chosen = await upload(client, admin, test_ca.issue([HOST]))
    assert (await put_webmail(client, admin, server["id"], chosen["id"])).status_code == 200
    body = assert_problem(await client.delete(f"/v1/certificates/{chosen['id']}", headers=admin), 409,
                          "certificate_in_use")
    assert HOST in body["detail"]
    # Replacing its material keeps it, if the new material still covers the host name.
    r = await client.put(f"/v1/certificates/{chosen['id']}", json=upload_body(test_ca.issue(["other.hosting.test"])),
                         headers=admin)
    assert_problem(r, 422, "hostname_not_covered")
    generation = (await get_server(client, admin, server["id"]))["desired_generation"]
    renewed = test_ca.issue([HOST])
    r = await client.put(f"/v1/certificates/{chosen['id']}", json=upload_body(renewed), headers=admin)
    assert r.status_code == 200, r.text
    assert (await preview(client, admin, server["id"]))["webmail_default"] == renewed.fingerprint
    assert (await get_server(client, admin, server["id"]))["desired_generation"] == generation + 1


async def test_server_delete_keeps_an_uploaded_webmail_default(client, admin, test_ca, hosted):
    server, _account, _customer = hosted
    chosen = await upload(client, admin, test_ca.issue([HOST]))
    assert (await put_webmail(client, admin, server["id"], chosen["id"])).status_code == 200
    assert (await client.delete("/v1/domains/a.test", headers=admin)).status_code == 204
    assert (await client.delete(f"/v1/servers/{server['id']}", headers=admin)).status_code == 204
    # The self-signed registration certificate went with the server; the uploaded one stays, free.
    items = (await client.get("/v1/certificates", headers=admin)).json()["items"]
    assert [c["id"] for c in items] == [chosen["id"]]
    assert (await client.delete(f"/v1/certificates/{chosen['id']}", headers=admin)).status_code == 204


async def test_the_foreign_key_refuses_deleting_a_webmail_default(client, admin, context, test_ca, hosted):
    """Migration 0009's RESTRICT, on SQLite and PostgreSQL: even a DELETE that skipped the usage
    check (a concurrent one) cannot leave a server pointing at nothing."""
    from sqlalchemy import delete
    from sqlalchemy.exc import IntegrityError

    from app.certificates.models import Certificate

    server, _account, _customer = hosted
    chosen = await upload(client, admin, test_ca.issue([HOST]))
    assert (await put_webmail(client, admin, server["id"], chosen["id"])).status_code == 200
    async with context.sessionmaker() as session:
        with pytest.raises(IntegrityError):
            await session.execute(delete(Certificate).where(Certificate.id == chosen["id"]))
            await session.commit()
        await session.rollback()
    assert (await get_server(client, admin, server["id"]))["webmail_certificate_id"] == chosen["id"]


def test_migration_0009_redeploys_servers_whose_default_changes(empty_database):
    """Existing servers get no choice (NULL), so nginx is now sent their server-wide mail
    certificate: where that differs from the registration certificate it was sent before, the
    server gets a new generation (its waiting deployment raised in place, or a new one), as any
    change of what is served does; elsewhere nothing moves. Downgrade drops the column."""
    import asyncio

    from sqlalchemy import inspect, text
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.migrate import downgrade, upgrade
    from tests.support.threads import in_thread

    url = empty_database
    in_thread(upgrade, url, "0010")
    now = datetime(2026, 11, 30, tzinfo=UTC)
    servers = {  # id: (mail certificate, agent, deployment status at generation 3)
        "secured": ("trusted", "https://a.test", "applied"),
        "waiting": ("trusted", "https://b.test", "retrying"),
        "no-agent": ("trusted", None, "pending"),
        "untouched": ("registration", "https://c.test", "applied"),
    }

    async def run(statements) -> list:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                out = []
                for statement, params in statements:
                    result = await conn.execute(text(statement), params)
                    out.append(result.all() if result.returns_rows else None)
                return out
        finally:
            await engine.dispose()

    seed = [(
        ("INSERT INTO certificates (id, source, subject, issuer, serial, sans, not_before, not_after,"
        " fingerprint_sha256, key_type, key_bits, self_signed, trusted, chain_length, certificate_pem,"
        " chain_pem, key_ciphertext, key_wrapped, master_key_id, revision, created_at, updated_at,"
        " renewal_attempts) VALUES (:id, 'upload', 's', 'i', '1', '[]', :now, :now, :id, 'ec-p256', 256, false,"
        " false, 1, '', '', :blob, :blob, 'k', 1, :now, :now, 0)"),
        {"id": cert, "now": now, "blob": b"\x00"},
    ) for cert in ("registration", "trusted")]
    for server, (mail, agent, status) in servers.items():
        seed.append((
            ("INSERT INTO servers (id, name, hostname, software, agent_url, mail_certificate_id,"
            " default_certificate_id, desired_generation, applied_generation, created_at, updated_at)"
            " VALUES (:id, :id, 'h', 'postfix-dovecot', :agent, :mail, 'registration', 3, 2, :now, :now)"),
            {"id": server, "agent": agent, "mail": mail, "now": now},
        ))
        seed.append((
            ("INSERT INTO deployments (id, server_id, generation, reason, status, attempts, changes,"
            " created_at, updated_at) VALUES (:id, :server, 3, 'r', :status, 2, 1, :now, :now)"),
            {"id": f"d-{server}", "server": server, "status": status, "now": now},
        ))
    in_thread(asyncio.run, run(seed))
    in_thread(upgrade, url)
    choices, generations, rows = in_thread(asyncio.run, run([
        ("SELECT DISTINCT webmail_certificate_id FROM servers", {}),
        ("SELECT id, desired_generation FROM servers", {}),
        (("SELECT server_id, generation, status, attempts, changes, next_attempt_at IS NOT NULL"
         " FROM deployments ORDER BY server_id, generation"), {}),
    ]))
    assert choices == [(None,)]
    assert dict(generations) == {"secured": 4, "waiting": 4, "no-agent": 4, "untouched": 3}
    assert [tuple(r) for r in rows] == [
        ("no-agent", 4, "pending", 0, 2, False),  # raised in place; no agent, so not due
        ("secured", 3, "applied", 2, 1, False),
        ("secured", 4, "pending", 0, 1, True),  # a new waiting deployment, due now
        ("untouched", 3, "applied", 2, 1, False),
        ("waiting", 4, "pending", 0, 2, True),  # raised in place
    ]
    in_thread(downgrade, url, "0010")

    async def columns() -> set[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("servers")})
        finally:
            await engine.dispose()

    found = in_thread(asyncio.run, columns())
    assert "webmail_certificate_id" not in found and "mail_certificate_id" in found


async def test_concurrent_changes_never_500_and_same_choice_bumps_once(client, admin, test_ca, hosted):
    """Ten administrators pressing the button at once (each request on its own connection on
    PostgreSQL, serialised by SQLite's write lock): the same choice is one new generation; a mix of
    choices and unsets ends with the document presenting what the server row says."""
    import asyncio
    from collections import Counter

    server, _account, _customer = hosted
    sid = server["id"]
    chosen = await upload(client, admin, test_ca.issue([HOST]))
    other = await upload(client, admin, test_ca.issue([HOST]))
    same = await asyncio.gather(*(put_webmail(client, admin, sid, chosen["id"]) for _ in range(10)))
    assert Counter(r.status_code for r in same) == {200: 10}, [r.text for r in same]
    assert (await get_server(client, admin, sid))["desired_generation"] == server["desired_generation"] + 1

    def request(i):
        if i % 3 == 2:
            return client.delete(f"/v1/servers/{sid}/webmail-certificate", headers=admin)
        return put_webmail(client, admin, sid, (chosen, other)[i % 3]["id"])

    mixed = await asyncio.gather(*(request(i) for i in range(12)))
    assert {r.status_code for r in mixed} <= {200, 404}, [r.text for r in mixed]
    final = await get_server(client, admin, sid)
    expected = final["webmail_default_certificate_id"]
    fingerprint = (await client.get(f"/v1/certificates/{expected}", headers=admin)).json()["fingerprint_sha256"]
    assert (await preview(client, admin, sid))["webmail_default"] == fingerprint
