"""Concurrent binds and unbinds of one (domain, service): upsert semantics, never a 500.

The requests run concurrently against the real database (each on its own pooled connection on
PostgreSQL, serialised by SQLite's write lock), as ten clients pressing the button at once would.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.support.api import create_domain, create_server, upload, upload_body

PARALLEL = 10


async def _hosted(client, admin, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    return server, customer


async def _generation(client, admin, server) -> int:
    return (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"]


async def test_parallel_first_binds_give_one_201_and_no_500(client, admin, customer_headers, test_ca):
    server, customer = await _hosted(client, admin, customer_headers)
    certs = [await upload(client, customer, test_ca.issue(["*.a.test"])) for _ in range(3)]
    for round_ in range(3):  # several rounds: a race that loses once in a while still shows
        await client.delete("/v1/domains/a.test/bindings/mail", headers=customer)
        before = await _generation(client, admin, server)
        responses = await asyncio.gather(*(
            client.put("/v1/domains/a.test/bindings/mail",
                       json={"certificate_id": certs[i % len(certs)]["id"]}, headers=customer)
            for i in range(PARALLEL)
        ))
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 200: PARALLEL - 1}, (round_, [r.text for r in responses])
        bound = (await client.get("/v1/domains/a.test/bindings", headers=customer)).json()["mail"]
        assert bound["source"] == "binding" and bound["certificate_id"] in {c["id"] for c in certs}
        assert await _generation(client, admin, server) > before


async def test_parallel_same_binds_change_the_generation_once(client, admin, customer_headers, test_ca):
    server, customer = await _hosted(client, admin, customer_headers)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    before = await _generation(client, admin, server)
    responses = await asyncio.gather(*(
        client.put("/v1/domains/a.test/bindings/webmail", json={"certificate_id": cert["id"]}, headers=customer)
        for _ in range(PARALLEL)
    ))
    assert Counter(r.status_code for r in responses) == {201: 1, 200: PARALLEL - 1}
    assert await _generation(client, admin, server) == before + 1


async def test_parallel_deletes_give_one_204_and_404s(client, admin, customer_headers, test_ca):
    server, customer = await _hosted(client, admin, customer_headers)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    for _round in range(3):
        r = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
        assert r.status_code == 201, r.text
        before = await _generation(client, admin, server)
        responses = await asyncio.gather(*(
            client.delete("/v1/domains/a.test/bindings/mail", headers=customer) for _ in range(PARALLEL)
        ))
        assert Counter(r.status_code for r in responses) == {204: 1, 404: PARALLEL - 1}
        for r in responses:
            if r.status_code == 404:
                assert r.json()["code"] == "not_found"
        assert await _generation(client, admin, server) == before + 1


async def test_parallel_domain_deletes_give_one_204(client, admin, customer_headers, test_ca):
    server, customer = await _hosted(client, admin, customer_headers)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
    before = await _generation(client, admin, server)
    responses = await asyncio.gather(*(
        client.delete("/v1/domains/a.test", headers=admin) for _ in range(PARALLEL)
    ))
    assert Counter(r.status_code for r in responses) == {204: 1, 404: PARALLEL - 1}
    assert await _generation(client, admin, server) == before + 1
    # the binding went with the domain, so the certificate is free to delete
    assert (await client.delete(f"/v1/certificates/{cert['id']}", headers=customer)).status_code == 204


async def test_bind_to_a_domain_deleted_meanwhile_is_gone_not_a_500(context):
    """The foreign key refuses a binding whose domain or certificate a concurrent DELETE removed."""
    from app.domains.repository import DomainRepository
    from app.kit.time import utc_now

    async with context.sessionmaker() as session:
        outcome = await DomainRepository(session).upsert_binding(
            "00000000-0000-0000-0000-000000000000", "mail", "00000000-0000-0000-0000-000000000001", utc_now()
        )
        await session.rollback()
    assert outcome.outcome == "gone"


async def test_certificate_delete_racing_a_bind_is_409_not_a_500(client, admin, customer_headers, test_ca, context):
    """DELETE /v1/certificates/{id} checks the usages, then deletes; a bind committed in between
    made the foreign key refuse the DELETE, which was a 500 (seen on PostgreSQL with a DELETE
    and four PUT .../bindings/mail in parallel). The check is made to miss the binding here."""
    from app.accounts.caller import Caller
    from app.certificates.errors import CertificateInUse
    from app.certificates.repository import CertificateRepository
    from app.certificates.service import CertificateService

    _server, customer = await _hosted(client, admin, customer_headers)
    cert = await upload(client, customer, test_ca.issue(["mail.a.test"]))
    r = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
    assert r.status_code == 201, r.text

    async with context.sessionmaker() as session:
        repo = CertificateRepository(session)
        real_usages = repo.usages

        async def usages_before_the_bind(ids):
            found = await real_usages(ids)
            return {key: [] for key in found}

        repo.usages = usages_before_the_bind
        service = CertificateService(repo, context.master_key)
        admin_caller = Caller(token_id="test", role="admin", account_id=None)
        with pytest.raises(CertificateInUse):
            await service.delete(admin_caller, cert["id"])
        await session.rollback()
    assert (await client.get(f"/v1/certificates/{cert['id']}", headers=customer)).status_code == 200


async def test_order_racing_a_delete_of_its_dns_provider_is_422_not_a_500(client, admin, customer_headers, context):
    """POST /v1/certificate-orders reads the provider, then writes the order; a DELETE of the
    provider committed in between made the foreign key refuse the order, which was a 500 (seen
    on PostgreSQL with three orders and a DELETE /v1/dns-providers/{id} in parallel). The
    provider lookup is made to answer with a row deleted meanwhile here."""
    from types import SimpleNamespace

    from app.accounts.caller import Caller
    from app.acme.repository import AcmeRepository
    from app.acme.schemas import OrderCreate
    from app.acme.service import AcmeService, UnknownDnsProvider
    from app.certificates.repository import CertificateRepository
    from app.certificates.service import CertificateService

    await _hosted(client, admin, customer_headers)
    async with context.sessionmaker() as session:
        service = AcmeService(AcmeRepository(session), context.master_key,
                              CertificateService(CertificateRepository(session), context.master_key))

        async def deleted_meanwhile(_caller, provider_id, for_use=False):
            return SimpleNamespace(id=provider_id)

        service.visible_provider = deleted_meanwhile
        body = OrderCreate(domain="a.test", wildcard=True, challenge="dns-01",
                           dns_provider_id="00000000-0000-0000-0000-00000000dead")
        with pytest.raises(UnknownDnsProvider):
            await service.create_order(Caller(token_id="test", role="admin", account_id=None), body)
        await session.rollback()
    assert (await client.get("/v1/certificate-orders", headers=admin)).json()["items"] == []


async def test_parallel_replaces_each_raise_the_revision(client, admin, test_ca):
    """Eight parallel PUT /v1/certificates/{id} all answered 200 but left revision at 2 or 3
    (SQLite and PostgreSQL): the revision was read, incremented in Python and written back."""
    cert = await upload(client, admin, test_ca.issue(["mail.a.test"]))
    bodies = [upload_body(test_ca.issue(["mail.a.test"])) for _ in range(6)]
    responses = await asyncio.gather(
        *(client.put(f"/v1/certificates/{cert['id']}", json=body, headers=admin) for body in bodies)
    )
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert sorted(r.json()["revision"] for r in responses) == [2, 3, 4, 5, 6, 7]
    assert (await client.get(f"/v1/certificates/{cert['id']}", headers=admin)).json()["revision"] == 7


async def test_bind_racing_a_replace_judges_the_replaced_material(client, admin, customer_headers, test_ca, context):
    """A bind read the certificate, a replace with material for other names committed, then the
    bind was written: webmail.a.test ended bound to a certificate for b.test (both requests
    answered 2xx; reproduced on PostgreSQL with a 0.08-0.1 s offset between the two PUTs). The
    replace is made to commit between the bind's read and its checks here."""
    from app.certificates.errors import HostnameNotCovered
    from app.certificates.repository import CertificateRepository
    from app.certificates.service import CertificateService
    from app.domains.repository import DomainRepository
    from app.domains.service import DomainService

    _server, customer = await _hosted(client, admin, customer_headers)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    elsewhere = upload_body(test_ca.issue(["mail.b.test"]))
    async with context.sessionmaker() as session:
        certificates = CertificateService(CertificateRepository(session), context.master_key)
        read = certificates.get_visible

        async def read_then_replaced_meanwhile(caller, cert_id):
            row = await read(caller, cert_id)
            r = await client.put(f"/v1/certificates/{cert_id}", json=elsewhere, headers=customer)
            assert r.status_code == 200, r.text  # not bound yet: the replace is allowed
            return row

        certificates.get_visible = read_then_replaced_meanwhile
        service = DomainService(DomainRepository(session), certificates)
        caller = (await _caller_of(context, customer))
        with pytest.raises(HostnameNotCovered):
            await service.bind(caller, "a.test", "webmail", cert["id"])
        await session.rollback()
    listed = (await client.get("/v1/domains/a.test/bindings", headers=customer)).json()
    assert listed["webmail"]["source"] != "binding"


async def _caller_of(context, headers):
    from app.accounts.repository import AccountRepository
    from app.accounts.service import AccountService

    token = headers["Authorization"].removeprefix("Bearer ")
    async with context.sessionmaker() as session:
        return await AccountService(AccountRepository(session)).authenticate(token)
