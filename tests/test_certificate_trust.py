"""Live trust: judged against the current trust store when read, with a reason; stored verdicts
follow a restart with another bundle, so bindings and the TLS status agree."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import event, select, update

from app.certificates.models import Certificate
from app.config import Settings
from app.context import AppContext
from app.main import create_app
from tests.support.api import create_domain, create_server, upload, upload_body
from tests.support.pki import CA, self_signed

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("trusted", None),
        ("unknown_issuer", "unknown_issuer"),
        ("missing_intermediate", "unknown_issuer"),
        ("self_signed", "self_signed"),
        ("name_constraints", "name_constraints"),
        ("issuer_expired", "issuer_expired"),
        ("no_subject_alt_name", "no_subject_alt_name"),
        ("invalid_chain", "invalid_chain"),
        ("expired", "expired"),
        ("not_yet_valid", "not_yet_valid"),
    ],
)
async def test_each_reason_through_the_api(client, admin, test_ca, untrusted_ca, case, reason):
    extra = {}
    if case == "trusted":
        issued = test_ca.intermediate("Trust API Issuing").issue(["mail.a.test"])
    elif case == "unknown_issuer":
        issued = untrusted_ca.issue(["mail.a.test"])
    elif case == "missing_intermediate":
        issued, extra = test_ca.intermediate("Trust API Missing").issue(["mail.a.test"]), {"chain_pem": None}
    elif case == "self_signed":
        issued = self_signed(["mail.a.test"])
    elif case == "name_constraints":
        issued = test_ca.intermediate("Trust API Constrained", permitted=["b.test"]).issue(["mail.a.test"])
    elif case == "issuer_expired":
        old = test_ca.intermediate("Trust API Old", not_before=NOW - timedelta(minutes=50),
                                   not_after=NOW - timedelta(minutes=5))
        issued = old.issue(["mail.a.test"], not_before=NOW - timedelta(minutes=40))
    elif case == "no_subject_alt_name":
        issued = test_ca.issue(["mail.a.test"], san=False)
    elif case == "invalid_chain":
        issued = test_ca.intermediate("Trust API Not A CA", is_ca=False).issue(["mail.a.test"])
    elif case == "expired":
        issued = test_ca.issue(["mail.a.test"], not_before=NOW - timedelta(minutes=50), not_after=NOW - timedelta(minutes=10))
    else:
        issued = test_ca.issue(["mail.a.test"], not_before=NOW + timedelta(days=2))
    cert = await upload(client, admin, issued, **extra)
    read = (await client.get(f"/v1/certificates/{cert['id']}", headers=admin)).json()
    listed = (await client.get("/v1/certificates", headers=admin)).json()["items"]
    for shown in (cert, read, next(c for c in listed if c["id"] == cert["id"])):
        assert shown["trust"]["reason"] == reason
        assert shown["trusted"] is shown["trust"]["trusted"] is (reason is None)
        assert (shown["trust"]["detail"] is None) is (reason is None)


async def test_trust_follows_the_store_across_restarts(client, app, context, settings, admin, customer_headers,
                                                        test_ca):
    """Uploaded while no bundle is configured, then the service restarts with it (and back)."""
    plain = AppContext.build(Settings(data_dir=settings.data_dir, database_url=settings.database_url,
                                      run_worker=False))
    plain_app = create_app(context=plain, run_worker=False)
    plain_app.state.ctx = plain
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plain_app), base_url="http://t") as before:
            account, customer = await customer_headers()
            server = await create_server(before, admin)
            await create_domain(before, admin, "a.test", server["id"], account)
            cert = await upload(before, customer, test_ca.issue(["webmail.a.test", "mail.a.test"]))
            assert (cert["trusted"], cert["trust"]["reason"]) == (False, "unknown_issuer")
            bound = await before.put("/v1/domains/a.test/bindings/webmail", json={"certificate_id": cert["id"]},
                                     headers=customer)
            assert "certificate_untrusted" in {w["code"] for w in bound.json()["warnings"]}
            tls = (await before.get("/v1/domains/a.test/tls", headers=customer)).json()
            assert "certificate_untrusted" in tls["webmail"]["reasons"] and tls["webmail"]["trusted"] is False

        # Restarted with CERTPOST_TRUST_BUNDLE: the certificate reads as trusted at once (live) ...
        read = (await client.get(f"/v1/certificates/{cert['id']}", headers=customer)).json()
        assert (read["trusted"], read["trust"]["reason"]) == (True, None)
        listed = (await client.get("/v1/certificates", headers=customer)).json()["items"]
        assert [c["trusted"] for c in listed] == [True]
        # ... and the start-up re-judges the stored verdict, so the TLS status agrees.
        async with app.router.lifespan_context(app):
            tls = (await client.get("/v1/domains/a.test/tls", headers=customer)).json()
            assert tls["webmail"]["trusted"] is True and tls["webmail"]["reasons"] == []
            async with context.sessionmaker() as session:
                row = await session.get(Certificate, cert["id"])
                assert (row.trusted, row.trust_reason, row.trust_store) == (True, None, context.trust.identity)

        # Restarted without the bundle again: untrusted again, everywhere.
        async with (plain_app.router.lifespan_context(plain_app),
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=plain_app), base_url="http://t") as after):
            tls = (await after.get("/v1/domains/a.test/tls", headers=customer)).json()
            assert "certificate_untrusted" in tls["webmail"]["reasons"]
            again = (await after.get(f"/v1/certificates/{cert['id']}", headers=customer)).json()
            assert again["trust"]["reason"] == "unknown_issuer"
    finally:
        await plain.close()


async def test_a_list_page_costs_no_query_per_row(client, context, admin, test_ca):
    """Rows judged against another store: one query reads the material of the whole page."""

    async def statements(limit: int) -> int:
        seen = []
        listener = lambda *args: seen.append(args[2])
        event.listen(context.engine.sync_engine, "before_cursor_execute", listener)
        try:
            response = await client.get(f"/v1/certificates?limit={limit}", headers=admin)
        finally:
            event.remove(context.engine.sync_engine, "before_cursor_execute", listener)
        assert response.status_code == 200 and len(response.json()["items"]) == limit
        assert all(c["trusted"] for c in response.json()["items"])
        return len(seen)

    for _ in range(6):
        await client.post("/v1/certificates", json=upload_body(test_ca.issue(["mail.a.test"])), headers=admin)
    async with context.sessionmaker() as session:
        await session.execute(update(Certificate).values(trust_store="judged-elsewhere", trusted=False))
        await session.commit()
    assert await statements(2) == await statements(6)
    async with context.sessionmaker() as session:  # reads judge, they do not write
        assert set(await session.scalars(select(Certificate.trust_store))) == {"judged-elsewhere"}


async def test_refresh_leaves_rows_of_the_current_store_alone(context, client, admin, test_ca):
    from app.certificates.trust import refresh_stored

    await upload(client, admin, test_ca.issue(["mail.a.test"]))
    await upload(client, admin, self_signed(["mail.a.test"]))
    assert await refresh_stored(context.sessionmaker, context.trust) == 0
    async with context.sessionmaker() as session:
        await session.execute(update(Certificate).values(trust_store=None))
        await session.commit()
    assert await refresh_stored(context.sessionmaker, context.trust, batch=1) == 1  # self-signed: never judged
    assert await refresh_stored(context.sessionmaker, context.trust) == 0


def test_a_new_root_changes_the_identity(test_ca):
    from app.kit.trust import TrustStore

    assert TrustStore([test_ca.cert]).identity != TrustStore([test_ca.cert, CA.create("Extra").cert]).identity
