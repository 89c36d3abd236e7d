"""The certificate picker: usable_for + service, repeated covers, sort by not_after, two tenants."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api import assert_problem, create_domain, create_server, upload

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def tenants(client, admin, customer_headers, test_ca):
    """Account A owns a.test; B has a certificate for a.test's names too; the platform one."""
    a_id, a = await customer_headers("picker-a")
    _b_id, b = await customer_headers("picker-b")
    server = await create_server(client, admin)
    await create_domain(client, admin, "a.test", server["id"], a_id)
    both = ["webmail.a.test", "mail.a.test"]
    certs = {
        "both_90": await upload(client, a, test_ca.issue(both, days=90)),
        "wildcard_40": await upload(client, a, test_ca.issue(["*.a.test"], days=40)),
        "webmail_60": await upload(client, a, test_ca.issue(["webmail.a.test"], days=60)),
        "expired": await upload(client, a, test_ca.issue(both, not_before=NOW - timedelta(minutes=50),
                                                         not_after=NOW - timedelta(minutes=10))),
        "future": await upload(client, a, test_ca.issue(both, not_before=NOW + timedelta(days=1))),
        "other_tenant": await upload(client, b, test_ca.issue(both, days=120)),
        "platform": await upload(client, admin, test_ca.issue(both, days=200)),
    }
    return {"a": a, "b": b, "certs": {k: v["id"] for k, v in certs.items()}}


async def listed(client, headers, query: str) -> list[str]:
    response = await client.get(f"/v1/certificates?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["items"]]


def ids(tenants, *names) -> set[str]:
    return {tenants["certs"][n] for n in names}


async def test_usable_for_both_services(client, tenants):
    found = await listed(client, tenants["a"], "usable_for=a.test")
    assert set(found) == ids(tenants, "both_90", "wildcard_40")  # in date, covering both, own account
    assert set(await listed(client, tenants["a"], "usable_for=A.TEST.&service=both")) == set(found)


async def test_usable_for_one_service(client, tenants):
    webmail = await listed(client, tenants["a"], "usable_for=a.test&service=webmail")
    assert set(webmail) == ids(tenants, "both_90", "wildcard_40", "webmail_60")
    mail = await listed(client, tenants["a"], "usable_for=a.test&service=mail")
    assert set(mail) == ids(tenants, "both_90", "wildcard_40")


async def test_expired_and_future_are_never_offered(client, tenants):
    for service in ("webmail", "mail", "both"):
        found = set(await listed(client, tenants["a"], f"usable_for=a.test&service={service}"))
        assert not found & ids(tenants, "expired", "future")


async def test_customers_never_see_another_account(client, tenants):
    # B's certificate covers a.test's names, but a.test is A's: B may not even learn it exists.
    assert_problem(await client.get("/v1/certificates?usable_for=a.test", headers=tenants["b"]), 404, "not_found")
    found = await listed(client, tenants["a"], "covers=webmail.a.test")
    assert not set(found) & ids(tenants, "other_tenant", "platform")
    # An unknown domain: coverage and dates only, still each caller's own certificates.
    assert await listed(client, tenants["b"], "usable_for=b.test") == []


async def test_admin_is_offered_what_a_bind_accepts(client, admin, tenants):
    found = set(await listed(client, admin, "usable_for=a.test"))
    assert found == ids(tenants, "both_90", "wildcard_40", "platform")  # not B's: it would be refused at bind


async def test_repeated_covers_means_all_of_them(client, tenants):
    a = tenants["a"]
    both = set(await listed(client, a, "covers=webmail.a.test&covers=mail.a.test"))
    assert both == ids(tenants, "both_90", "wildcard_40", "expired", "future")  # covers= does not judge dates
    assert set(await listed(client, a, "covers=mail.a.test&covers=webmail.a.test")) == both
    webmail = set(await listed(client, a, "covers=webmail.a.test"))
    assert webmail == both | ids(tenants, "webmail_60")
    assert await listed(client, a, "covers=webmail.a.test&covers=x.b.test") == []


async def test_sort_by_not_after_with_cursors(client, tenants):
    a = tenants["a"]
    query = "usable_for=a.test&service=webmail"
    soonest = await listed(client, a, f"{query}&sort=not_after")
    assert soonest == [tenants["certs"][n] for n in ("wildcard_40", "webmail_60", "both_90")]
    assert await listed(client, a, f"{query}&sort=-not_after") == soonest[::-1]
    for sort, expected in (("not_after", soonest), ("-not_after", soonest[::-1])):
        pages, cursor = [], None
        while True:
            url = f"/v1/certificates?{query}&sort={sort}&limit=1" + (f"&cursor={cursor}" if cursor else "")
            body = (await client.get(url, headers=a)).json()
            pages += [c["id"] for c in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == expected
    default = await listed(client, a, query)  # the default order stays: oldest first
    assert default == [tenants["certs"][n] for n in ("both_90", "wildcard_40", "webmail_60")]


async def test_picker_refusals(client, tenants):
    a = tenants["a"]
    first = (await client.get("/v1/certificates?sort=not_after&limit=1", headers=a)).json()["next_cursor"]
    assert_problem(await client.get(f"/v1/certificates?sort=-not_after&cursor={first}", headers=a), 422,
                   "invalid_cursor")
    assert_problem(await client.get("/v1/certificates?service=mail", headers=a), 422, "invalid_filter")
    assert_problem(await client.get("/v1/certificates?usable_for=-bad-", headers=a), 422, "invalid_filter")
    assert_problem(await client.get("/v1/certificates?covers=a.test&covers=", headers=a), 422, "invalid_filter")
    assert (await client.get("/v1/certificates?usable_for=a.test&service=imap", headers=a)).status_code == 422


async def test_the_picker_refuses_mail_where_a_bind_would(client, admin, customer_headers, test_ca):
    """qmail-courier cannot present a per-domain mail certificate: the picker answers what the bind
    answers (409 sni_unsupported) for mail and both, and still offers webmail; postfix-dovecot
    (with or without an HAProxy front) offers mail."""
    account_id, customer = await customer_headers("picker-sni")
    qmail = await create_server(client, admin, name="q1", hostname="q1.hosting.test", software="qmail-courier")
    dovecot = await create_server(client, admin, name="d1", hostname="d1.hosting.test", software="postfix-dovecot")
    fronted = await create_server(client, admin, name="h1", hostname="h1.hosting.test", software="postfix-dovecot",
                                  tls_front="haproxy")
    await create_domain(client, admin, "q.test", qmail["id"], account_id)
    await create_domain(client, admin, "d.test", dovecot["id"], account_id)
    await create_domain(client, admin, "h.test", fronted["id"], account_id)
    q = await upload(client, customer, test_ca.issue(["*.q.test"]))
    d = await upload(client, customer, test_ca.issue(["*.d.test"]))
    h = await upload(client, customer, test_ca.issue(["*.h.test"]))

    for service in ("mail", "both"):
        response = await client.get(f"/v1/certificates?usable_for=q.test&service={service}", headers=customer)
        body = assert_problem(response, 409, "sni_unsupported")
        assert "qmail" in body["advice"] and "q1.hosting.test" in body["advice"]
        assert body["recommended_client_hostname"] == "q1.hosting.test"
        bind = await client.put("/v1/domains/q.test/bindings/mail", json={"certificate_id": q["id"]},
                                headers=customer)
        assert {k: v for k, v in assert_problem(bind, 409, "sni_unsupported").items() if k != "instance"} == {
            k: v for k, v in body.items() if k != "instance"}
    # The default is both: refused as well; webmail is offered.
    assert_problem(await client.get("/v1/certificates?usable_for=q.test", headers=customer), 409, "sni_unsupported")
    assert await listed(client, customer, "usable_for=q.test&service=webmail") == [q["id"]]
    for domain, cert in (("d.test", d), ("h.test", h)):
        for service in ("mail", "both"):
            assert await listed(client, customer, f"usable_for={domain}&service={service}") == [cert["id"]]
    # Another tenant learns nothing about q.test's server: 404 as for any domain it cannot see.
    _other, stranger = await customer_headers("picker-sni-b")
    response = await client.get("/v1/certificates?usable_for=q.test&service=mail", headers=stranger)
    assert_problem(response, 404, "not_found")


async def test_the_picker_is_driven_by_the_names_not_by_the_account(context, settings):
    """SQLite has no table statistics: an equality on the account looked like a few rows, so
    the picker read every certificate of the account in its index and tested the names on each
    (16 ms at 10,000, docs/performance.md). With a covers filter the account's column is
    ``unindexed``: the certificates are found by their names. PostgreSQL's planner decides by
    its statistics."""
    from app.accounts.caller import Caller
    from app.certificates.repository import (
        CERTIFICATE_ORDERS,
        CertificateFilter,
        CertificateRepository,
    )
    from app.db import query_plan

    if context.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's planner chooses by table statistics")
    names = (("webmail.a.test", "*.a.test"), ("mail.a.test", "*.a.test"))
    customer = Caller(token_id="t", role="customer", account_id="acct")
    async with context.sessionmaker() as session:
        repo = CertificateRepository(session)
        for caller, bindable in ((customer, None), (Caller(token_id="t", role="admin", account_id=None), "acct")):
            flt = CertificateFilter(visible=caller.visible_rows, covers=names, valid_at=NOW,
                                    bindable_for_account=bindable)
            stmt = repo.statement(flt).order_by(*CERTIFICATE_ORDERS["created_at"].order_by()).limit(101)
            plan = "\n".join(await query_plan(session, stmt))
            assert "ix_certificates_account" not in plan and "certificates_1 (id=?)" in plan, plan
        # without a names filter the account's index is the way to a page, as before
        flt = CertificateFilter(visible=customer.visible_rows)
        plan = "\n".join(await query_plan(session, repo.statement(flt).order_by(
            *CERTIFICATE_ORDERS["created_at"].order_by()).limit(101)))
        assert "ix_certificates_account_created" in plan, plan
