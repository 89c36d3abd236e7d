"""The TLS status of many domains (issue 9): GET /v1/domain-tls and the server export.

Two accounts share a server (one account also has a second server); the domains cover every
reason a client warns for (the server default, untrusted, self-signed, expired, not yet valid)
and domains with none. Filters and sorts are checked against the rows the unfiltered list
computes, and those against GET /v1/domains/{d}/tls for the same domain.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import io
import json
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from pydantic_core import to_json, to_jsonable_python
from sqlalchemy import event, select, update

from app.accounts.caller import Caller
from app.certificates.models import Certificate
from app.domains import tls_lines, tls_list, tls_report, tls_rows, tls_upkeep
from app.domains.models import SERVICES, Domain
from app.domains.repository import DomainRepository
from app.domains.tls_list import TlsQuery, visible_filter
from app.domains.tls_report import CSV_COLUMNS
from app.domains.tls_rows import DomainTlsRepository, SortOrder, TlsFilter
from app.domains.tls_summary import summarize
from app.kit.time import utc_now
from tests.support.api import assert_problem, create_domain, create_server, upload, upload_body
from tests.support.pki import self_signed

REASONS = ("hostname_not_covered", "self_signed", "certificate_untrusted", "certificate_expired",
           "certificate_not_yet_valid")


async def _bind(client, headers, domain, service, cert_id):
    r = await client.put(f"/v1/domains/{domain}/bindings/{service}", json={"certificate_id": cert_id}, headers=headers)
    assert r.status_code in (200, 201), r.text


async def _set_validity(context, cert_id, **values):
    """Past or future material, which no upload makes: written around the API, so the domains
    presenting it are brought up to date as a replace of the material does (tls_upkeep)."""
    async with context.sessionmaker() as session:
        await session.execute(update(Certificate.__table__).where(Certificate.id == cert_id).values(**values))
        await tls_upkeep.presenting(session, [cert_id])
        await session.commit()


@pytest.fixture
async def hosting(client, admin, customer_headers, test_ca, untrusted_ca, context):
    """server1: account A's a0..a5 and account B's b0..b3; server2: B's z0, z1."""
    s1 = await create_server(client, admin, name="mx1", hostname="mx1.hosting.test")
    s2 = await create_server(client, admin, name="mx2", hostname="mx2.hosting.test")
    acct_a, a = await customer_headers("a")
    acct_b, b = await customer_headers("b")
    now = datetime.now(UTC)
    for name in ("a0", "a1", "a2", "a3", "a4", "a5"):
        await create_domain(client, admin, f"{name}.example", s1["id"], acct_a)
    for name in ("b0", "b1", "b2", "b3"):
        await create_domain(client, admin, f"{name}.example", s1["id"], acct_b)
    for name in ("z0", "z1"):
        await create_domain(client, admin, f"{name}.example", s2["id"], acct_b)

    async def both(headers, domain, issued):
        cert = await upload(client, headers, issued)
        for service in ("webmail", "mail"):
            await _bind(client, headers, domain, service, cert["id"])
        return cert["id"]

    def names(d):
        return [f"webmail.{d}", f"mail.{d}"]

    # a0: trusted on both, no warning. a1: trusted, expiring in 10 days (a notice only).
    await both(a, "a0.example", test_ca.issue(names("a0.example"), days=300))
    await both(a, "a1.example", test_ca.issue(names("a1.example"), days=10))
    # a2: untrusted issuer; a3: self-signed; a4: expired since; a5: webmail only (mail: server default).
    await both(a, "a2.example", untrusted_ca.issue(names("a2.example"), days=200))
    await both(a, "a3.example", self_signed(names("a3.example"), days=150))
    expired = await both(a, "a4.example", test_ca.issue(names("a4.example"), days=100))
    await _set_validity(context, expired, not_before=now - timedelta(days=90), not_after=now - timedelta(days=2))
    cert = await upload(client, a, test_ca.issue(["*.a5.example"], days=250))
    await _bind(client, a, "a5.example", "webmail", cert["id"])
    # b0: not yet valid (moved after binding); b1: trusted wildcard; b2, b3: nothing bound (the same
    # certificates, so the same not_after: a tie for the expiry sort).
    later = await both(b, "b0.example", test_ca.issue(names("b0.example"), days=400))
    await _set_validity(context, later, not_before=now + timedelta(days=3))
    await both(b, "b1.example", test_ca.issue(["*.b1.example"], days=350))
    await both(b, "z0.example", test_ca.issue(names("z0.example"), days=60))
    return {"s1": s1["id"], "s2": s2["id"], "acct_a": acct_a, "acct_b": acct_b, "a": a, "b": b}


async def _all(client, headers, full_pages: bool = True, **params) -> list[dict]:
    """Every row, following next_cursor two at a time (checks there is no repeat, and with
    ``full_pages`` that only the last page is short)."""
    rows, cursor = [], None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/domain-tls", params=query, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 2 or not full_pages
    names = [row["domain"] for row in rows]
    assert len(names) == len(set(names)), names
    return rows


def _names(rows):
    return [row["domain"] for row in rows]


ALL = ["a0", "a1", "a2", "a3", "a4", "a5", "b0", "b1", "b2", "b3", "z0", "z1"]


async def test_rows_equal_the_single_domain_tls_status(client, admin, hosting):
    rows = await _all(client, admin)
    assert _names(rows) == [f"{n}.example" for n in ALL]
    for row in rows:
        single = (await client.get(f"/v1/domains/{row['domain']}/tls", headers=admin)).json()
        assert row["server_id"] == single["server_id"]
        for service in ("webmail", "mail"):
            mine, theirs = row[service], single[service]
            assert mine["hostname"] == theirs["hostname"]
            assert mine["source"] == theirs["source"]
            assert mine["certificate_id"] == theirs["certificate"]["id"]
            assert mine["certificate_names"] == theirs["certificate"]["sans"]
            assert mine["not_after"] == theirs["certificate"]["not_after"]
            for key in ("client_warning", "reasons", "notices", "deployment"):
                assert mine[key] == theirs[key], (row["domain"], service, key)
            assert mine["drifted"] is any(o["drifted"] for o in theirs["observed"])
        for key in ("recommended_client_hostname", "recommendation_reason", "recommended_ports"):
            assert row["mail"][key] == single["mail"][key]
        assert row["autoconfig"] == single["autoconfig"], row["domain"]
        assert row["client_warning"] == (single["webmail"]["client_warning"] or single["mail"]["client_warning"])
        assert row["not_after"] == min(row["webmail"]["not_after"], row["mail"]["not_after"],
                                       key=datetime.fromisoformat)
    by_name = {row["domain"]: row for row in rows}
    # every reason occurs, so each filter below is checked on rows it keeps and rows it drops
    seen = {reason for row in rows for s in ("webmail", "mail") for reason in row[s]["reasons"]}
    assert seen == set(REASONS)
    assert not by_name["a0.example"]["client_warning"]
    assert by_name["a1.example"]["webmail"]["notices"] == ["certificate_expiring"]
    assert by_name["a5.example"]["mail"]["source"] == "server-default"
    # a5's webmail is a wildcard: it covers the autoconfiguration names; a0's names only its own two
    assert by_name["a5.example"]["autoconfig"]["uncovered_names"] == []
    assert by_name["a0.example"]["autoconfig"]["uncovered_names"] == ["autoconfig.a0.example", "autodiscover.a0.example"]


async def _check_filters(client, admin, hosting):
    """Every filter keeps exactly the rows whose computed status says so, and counts them."""
    rows = await _all(client, admin)

    def expect(pred):
        return [row["domain"] for row in rows if pred(row)]

    checks = {
        **{f"reason={r}": ({"reason": r}, lambda row, r=r: any(r in row[s]["reasons"] for s in ("webmail", "mail")))
           for r in REASONS},
        "warning=true": ({"warning": "true"}, lambda row: row["client_warning"]),
        "warning=false": ({"warning": "false"}, lambda row: not row["client_warning"]),
        "server_id": ({"server_id": hosting["s2"]}, lambda row: row["server_id"] == hosting["s2"]),
        "account_id": ({"account_id": hosting["acct_b"]}, lambda row: row["account_id"] == hosting["acct_b"]),
        "prefix": ({"prefix": "A"}, lambda row: row["domain"].startswith("a")),
        "q": ({"q": "1.EX"}, lambda row: "1.ex" in row["domain"]),
        "q with LIKE characters": ({"q": "%"}, lambda row: False),
        "prefix with LIKE characters": ({"prefix": "a_"}, lambda row: False),
        "prefix, a whole name": ({"prefix": "Z1.example"}, lambda row: row["domain"] == "z1.example"),
        "prefix, past every name": ({"prefix": "z9"}, lambda row: False),
        "combined": ({"server_id": hosting["s1"], "warning": "true", "prefix": "b"},
                     lambda row: row["server_id"] == hosting["s1"] and row["client_warning"]
                     and row["domain"].startswith("b")),
        "account, reason": ({"account_id": hosting["acct_a"], "reason": "certificate_untrusted"},
                            lambda row: row["account_id"] == hosting["acct_a"]
                            and any("certificate_untrusted" in row[s]["reasons"] for s in ("webmail", "mail"))),
        "warning=false, untrusted": ({"warning": "false", "reason": "certificate_untrusted"}, lambda row: False),
    }
    for label, (params, pred) in checks.items():
        got = await _all(client, admin, **params)
        assert _names(got) == expect(pred), label
        r = await client.get("/v1/domain-tls", params={**params, "count": "true", "limit": 1}, headers=admin)
        assert r.json()["total"] == len(expect(pred)), label
    return rows


async def test_every_filter_keeps_exactly_the_rows_the_rules_say(client, admin, hosting):
    await _check_filters(client, admin, hosting)
    assert (await client.get("/v1/domain-tls", headers=admin)).json()["total"] is None


async def _check_sorts(client, admin, rows):
    """The four sorts page through every row in order, two at a time (ties on not_after broken
    by name across pages), and a filtered expiry sort too."""
    by_name = sorted(rows, key=lambda row: row["domain"])
    by_expiry = sorted(rows, key=lambda row: (datetime.fromisoformat(row["not_after"]), row["domain"]))
    assert _names(await _all(client, admin, sort="name")) == _names(by_name)
    assert _names(await _all(client, admin, sort="-name")) == _names(by_name)[::-1]
    assert _names(await _all(client, admin, sort="not_after")) == _names(by_expiry)
    assert _names(await _all(client, admin, sort="-not_after")) == _names(by_expiry)[::-1]
    warned = await _all(client, admin, sort="-not_after", warning="true")
    assert _names(warned) == [row["domain"] for row in by_expiry[::-1] if row["client_warning"]]
    quiet = await _all(client, admin, sort="not_after", warning="false")
    assert _names(quiet) == [row["domain"] for row in by_expiry if not row["client_warning"]]


async def test_sorts_page_through_every_row_in_order(client, admin, hosting):
    rows = await _all(client, admin)
    await _check_sorts(client, admin, rows)
    # b2 and b3 share a not_after (the server's defaults): the name breaks the tie across pages
    tied = [row["not_after"] for row in rows if row["domain"] in ("b2.example", "b3.example")]
    assert tied[0] == tied[1]


async def test_customers_see_their_own_account_only(client, admin, hosting):
    mine = await _all(client, hosting["a"])
    assert _names(mine) == [f"{n}.example" for n in ALL if n.startswith("a")]
    theirs = await _all(client, hosting["b"], server_id=hosting["s1"])
    assert _names(theirs) == ["b0.example", "b1.example", "b2.example", "b3.example"]
    r = await client.get("/v1/domain-tls", params={"account_id": hosting["acct_b"], "count": "true"},
                         headers=hosting["a"])
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None, "total": 0}
    assert (await client.get("/v1/domain-tls", params={"account_id": hosting["acct_a"]},
                             headers=hosting["a"])).json()["items"] == mine[:100]


async def test_refusals_are_coded(client, admin, hosting):
    assert_problem(await client.get("/v1/domain-tls?sort=created", headers=admin), 422, "validation_error")
    assert_problem(await client.get("/v1/domain-tls?reason=nope", headers=admin), 422, "validation_error")
    assert_problem(await client.get("/v1/domain-tls?limit=0", headers=admin), 422, "validation_error")
    assert_problem(await client.get("/v1/domain-tls?cursor=!!", headers=admin), 422, "invalid_cursor")
    first = (await client.get("/v1/domain-tls?limit=1", headers=admin)).json()
    r = await client.get("/v1/domain-tls", params={"limit": 1, "cursor": first["next_cursor"], "sort": "not_after"},
                         headers=admin)
    assert_problem(r, 422, "invalid_cursor")  # a cursor of another sort
    forged = base64.urlsafe_b64encode(json.dumps(["domain-tls:not_after", "year 0", "a"]).encode()).decode()
    assert_problem(await client.get("/v1/domain-tls", params={"sort": "not_after", "cursor": forged}, headers=admin),
                   422, "invalid_cursor")
    surrogate = base64.urlsafe_b64encode(b'["domain-tls:name","\\ud800"]').decode()
    assert_problem(await client.get("/v1/domain-tls", params={"cursor": surrogate}, headers=admin), 422,
                   "invalid_cursor")
    assert (await client.get("/v1/domain-tls")).status_code == 401
    assert_problem(await client.get("/v1/servers/nope/domain-tls.ndjson", headers=admin), 404, "not_found")


async def test_export_equals_the_paged_list(client, admin, hosting):
    for headers, server in ((admin, "s1"), (hosting["b"], "s1"), (admin, "s2")):
        paged = await _all(client, headers, server_id=hosting[server])
        r = await client.get(f"/v1/servers/{hosting[server]}/domain-tls.ndjson", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        assert [json.loads(line) for line in r.text.splitlines()] == paged
        r = await client.get(f"/v1/servers/{hosting[server]}/domain-tls.csv", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        records = list(csv.reader(io.StringIO(r.text)))
        assert tuple(records[0]) == CSV_COLUMNS
        assert [rec[0] for rec in records[1:]] == _names(paged)
        for rec, row in zip(records[1:], paged, strict=True):
            flat = dict(zip(CSV_COLUMNS, rec, strict=True))
            assert flat["mail_reasons"].split() == row["mail"]["reasons"]
            assert flat["webmail_certificate_id"] == row["webmail"]["certificate_id"]
            assert flat["not_after"] == row["not_after"]
            assert flat["mail_recommended_client_hostname"] == (row["mail"]["recommended_client_hostname"] or "")
            assert flat["webmail_drifted"] == ("true" if row["webmail"]["drifted"] else "false")
            assert flat["mail_recommended_ports"].split() == [str(p) for p in row["mail"]["recommended_ports"]]
            assert flat["autoconfig_hostname"] == row["autoconfig"]["hostname"]
            assert flat["autoconfig_uncovered_names"].split() == row["autoconfig"]["uncovered_names"]
            assert flat["autoconfig_endpoints"].split() == [
                f"{e['protocol']}:{e['port']}:{e['security']}" for e in row["autoconfig"]["endpoints"]]


async def test_export_and_page_bytes_equal_the_rules_applied_one_domain_at_a_time(client, admin, hosting, context,
                                                                                  settings):
    """``RowBuilder`` evaluates the rules once per distinct input; ``tls_report.row`` once per
    domain. Same facts, same bytes: every NDJSON line, CSV record and page item (server
    defaults, self-signed, expired, not yet valid, untrusted, wildcard and covered rows)."""
    r = await client.get(f"/v1/servers/{hosting['s1']}/domain-tls.ndjson", headers=admin)
    lines = r.content.splitlines()
    records = list(csv.reader(io.StringIO((await client.get(f"/v1/servers/{hosting['s1']}/domain-tls.csv",
                                                            headers=admin)).text)))[1:]
    page = (await client.get("/v1/domain-tls", params={"server_id": hosting["s1"]}, headers=admin)).content
    f = visible_filter(Caller.for_worker("test"), TlsQuery(server_id=hosting["s1"]))
    now = utc_now()
    async with context.sessionmaker() as session:
        repo = DomainTlsRepository(session)
        servers = await repo.servers({hosting["s1"]})
        facts = [row async for batch in repo.batches(f, now, 3) for row in batch]
    expected = [tls_report.row(d, servers[d.server_id], now, settings.expiring_days) for d in facts]
    assert len(expected) == len(lines) == len(records) == 10
    assert {row["mail"]["source"] for row in expected} == {"binding", "server-default"}
    assert lines == [to_json(row) for row in expected]
    assert records == [tls_report.csv_record(to_jsonable_python(row)) for row in expected]
    assert page.startswith(b'{"items":[' + b",".join(lines) + b"]")
    # the whole page, written as text (tls_lines), is what encoding the rows as dicts writes
    for params, total in (({}, None), ({"count": "true"}, 10)):
        page = (await client.get("/v1/domain-tls", params={"server_id": hosting["s1"], **params}, headers=admin))
        assert page.content == to_json({"items": expected, "next_cursor": None, "total": total})
    first = (await client.get("/v1/domain-tls", params={"server_id": hosting["s1"], "limit": 3}, headers=admin)).json()
    assert first["next_cursor"] and (await client.get(
        "/v1/domain-tls", params={"server_id": hosting["s1"], "limit": 3}, headers=admin)).content == to_json(
        {"items": [json.loads(line) for line in lines[:3]], "next_cursor": first["next_cursor"], "total": None})
    # a batch shares its evaluations across rows: the builder's rows equal the reference's too
    builder = tls_report.RowBuilder(servers, now, settings.expiring_days)
    assert [to_json(builder.row(d)) for d in facts] == [to_json(row) for row in expected]


async def test_drifted_names_show_in_the_export_as_in_the_page(client, admin, hosting, context):
    """The export reads the server's drifted names once (few); a page per page: the same flags."""
    from app.drift.models import ServedObservation

    now = datetime.now(UTC)
    async with context.engine.begin() as conn:
        for hostname, service in (("mail.a0.example", "mail"), ("", "webmail")):  # "": an unbound name's probe
            await conn.execute(ServedObservation.__table__.insert().values(
                server_id=hosting["s1"], hostname=hostname, service=service, daemon="nginx", port=443,
                protocol="https", expected="aa" * 32, served="bb" * 32, error=None, drifted=True, observed_at=now))
    paged = await _all(client, admin, server_id=hosting["s1"])
    r = await client.get(f"/v1/servers/{hosting['s1']}/domain-tls.ndjson", headers=admin)
    assert [json.loads(line) for line in r.text.splitlines()] == paged
    flags = {(row["domain"], s) for row in paged for s in ("webmail", "mail") if row[s]["drifted"]}
    assert flags == {("a0.example", "mail"), ("b2.example", "webmail"), ("b3.example", "webmail")}


async def test_other_requests_are_answered_while_an_export_batch_is_encoded(client, admin, hosting, monkeypatch):
    """Encoding a batch (about 1,000 rows' rules and JSON: tens of milliseconds of CPU) runs in a
    worker thread, not on the event loop. Order, not speed: the batch below is held until
    /healthz has answered, which it could not do if the batch ran on the loop (it would wait
    out the hold, and answer after the batch)."""
    order: list[str] = []
    answered = threading.Event()
    encode = tls_list.encode_batch

    def held(*args):
        order.append("batch started")
        answered.wait(timeout=10)
        order.append("batch done")
        return encode(*args)

    monkeypatch.setattr(tls_list, "encode_batch", held)
    export = asyncio.create_task(client.get(f"/v1/servers/{hosting['s1']}/domain-tls.ndjson", headers=admin))
    for _ in range(200):
        if order:
            break
        await asyncio.sleep(0.01)
    assert (await client.get("/healthz")).status_code == 200
    order.append("healthz answered")
    answered.set()
    r = await export
    assert r.status_code == 200 and len(r.content.splitlines()) == 10
    assert order == ["batch started", "healthz answered", "batch done"]


@contextmanager
def statements(context):
    """The statements run meanwhile, on the session's engine and on the hot reads' (app/reads.py)."""
    seen = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement.split("\n")[0][:120])

    engines = (context.engine.sync_engine, context.reads().engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


async def test_a_domain_written_around_the_application_is_left_out_not_a_failure(client, admin, hosting, context):
    """A domain inserted by hand (a bulk load, a restore of part of a table) presents nothing
    until ``tls_upkeep`` runs: the pages and the export leave it out and answer for the rest
    (the page it fell on is one row short, and the paging goes on past it); the upkeep brings it in."""
    from app.db import new_id

    before = await _all(client, admin)
    async with context.sessionmaker() as session:
        server = (await session.execute(select(Domain.server_id, Domain.account_id).limit(1))).first()
        now = utc_now()
        await session.execute(Domain.__table__.insert().values(
            id=new_id(), name="hand.example", server_id=server[0], account_id=server[1], created_at=now,
            updated_at=now))
        await session.commit()
    assert await _all(client, admin, full_pages=False) == before
    for sort in ("name", "not_after"):
        r = await client.get("/v1/domain-tls", params={"sort": sort, "q": "hand"}, headers=admin)
        assert r.status_code == 200 and r.json()["items"] == [], r.text
    r = await client.get(f"/v1/servers/{server[0]}/domain-tls.ndjson", headers=admin)
    assert r.status_code == 200 and b"hand.example" not in r.content
    async with context.sessionmaker() as session:
        await tls_upkeep.everything(session)
        await session.commit()
    tls_list.memory(context).clear()
    assert "hand.example" in [row["domain"] for row in await _all(client, admin)]


async def test_no_query_per_row(client, admin, hosting, context):
    counts = []
    await client.get("/v1/domain-tls", params={"limit": 1}, headers=admin)  # the token is looked up once
    for limit in (1, 11):
        tls_list.memory(context).certificates.clear()  # each page reads its certificates
        with statements(context) as seen:
            r = await client.get("/v1/domain-tls", params={"limit": limit, "count": "true"}, headers=admin)
            assert r.status_code == 200
        counts.append(seen)
    assert len(counts[0]) == len(counts[1]) > 0, counts


async def test_pages_read_certificates_again_only_when_they_changed(client, admin, hosting, context):
    """A page takes the certificates of an earlier page from the context's ``tls_list.PageMemory`` while
    their row version is the one its rows carry: no certificate statement when nothing changed;
    a certificate changed in any way (here around the API, as a trust refresh writes) is read
    again, and the page shows the change."""
    params = {"server_id": hosting["s1"], "limit": 4}
    tls_list.memory(context).certificates.clear()
    with statements(context) as cold:
        before = (await client.get("/v1/domain-tls", params=params, headers=admin)).json()
    with statements(context) as warm:
        again = await client.get("/v1/domain-tls", params=params, headers=admin)
    assert again.json() == before
    assert [s for s in cold if "FROM certificates" in s or s.startswith("SELECT certificates.")]
    assert len(warm) == len(cold) - 1 and not [s for s in warm if s.startswith("SELECT certificates.")], warm
    row = next(r for r in before["items"] if r["webmail"]["reasons"] == [] and r["mail"]["source"] == "binding")
    cert_id = row["webmail"]["certificate_id"]
    named = {**params, "q": row["domain"]}  # the other way to a page's rows (tls_rows._rows_named)
    assert (await client.get("/v1/domain-tls", params=named, headers=admin)).json()["items"] == [row]
    async with context.sessionmaker() as session:
        await session.execute(update(Certificate.__table__).where(Certificate.id == cert_id).values(trusted=False))
        await tls_upkeep.presenting(session, [cert_id])
        await session.commit()
    for query in (named, params):
        after = {r["domain"]: r for r in (await client.get("/v1/domain-tls", params=query, headers=admin)).json()["items"]}
        assert after[row["domain"]]["webmail"]["reasons"] == ["certificate_untrusted"], query


async def test_plain_queries_resolved_by_hand_answer_as_the_solver_does(client, admin, hosting):
    """The list resolves plain queries itself (app/direct.py) and leaves other spellings to
    FastAPI: both give the same bytes, and what the declared parameters refuse is refused with
    the same codes."""
    s1 = hosting["s1"]
    same = [({"warning": "true"}, {"warning": "1"}), ({"warning": "false"}, {"warning": "off"}),
            ({"count": "true", "limit": "3"}, {"count": "yes", "limit": "03"}),
            ({"server_id": s1, "sort": "-not_after", "limit": "2"}, {"server_id": s1, "sort": "-not_after", "limit": "+2"}),
            ({"reason": "self_signed", "count": "false"}, {"reason": "self_signed", "count": "0"})]
    for plain, other in same:
        a = await client.get("/v1/domain-tls", params=plain, headers=admin)
        b = await client.get("/v1/domain-tls", params=other, headers=admin)
        assert a.status_code == b.status_code == 200 and a.content == b.content, (plain, other)
    for params in ({"warning": "maybe"}, {"prefix": ""}, {"q": "x" * 254}, {"server_id": "s" * 37},
                   {"account_id": "a" * 37}, {"cursor": "c" * 2049}, {"limit": "1001"}, {"count": "2"},
                   {"sort": "NAME"}, {"reason": ""}):
        assert_problem(await client.get("/v1/domain-tls", params=params, headers=admin), 422, "validation_error")
    assert_problem(await client.get("/v1/domain-tls", params={"page": "2"}, headers=admin), 422, "unknown_parameter")
    for params in ({}, {"limit": "abc"}):
        assert_problem(await client.get("/v1/domain-tls", params=params), 401, "unauthenticated")
    longest = {"q": "x" * 253, "prefix": "x" * 253, "server_id": "s" * 36, "account_id": "a" * 36}
    assert (await client.get("/v1/domain-tls", params=longest, headers=admin)).json()["items"] == []


# -- the export's text path (tls_lines) --------------------------------------------------------


async def _facts_and_servers(context, server_id, size=3):
    f = visible_filter(Caller.for_worker("test"), TlsQuery(server_id=server_id))
    now = utc_now()
    async with context.sessionmaker() as session:
        repo = DomainTlsRepository(session)
        servers = await repo.servers({server_id})
        facts = [row async for batch in repo.batches(f, now, size) for row in batch]
    return facts, servers, now


def _reference_lines(facts, servers, now, expiring_days, drifted=frozenset()):
    rows = [tls_report.row(d, servers[d.server_id], now, expiring_days, drifted) for d in facts]
    return ([to_json(row).decode() for row in rows],
            [tls_lines.csv_text([tls_report.csv_record(to_jsonable_python(row))]) for row in rows])


async def test_text_lines_equal_the_rules_applied_one_domain_at_a_time(client, admin, hosting, context, settings):
    """``LineBuilder`` writes each row from text made once per key and per certificate; the
    reference builds the row as dicts (``tls_report.row``) and encodes it with pydantic and the
    csv module. Same bytes on every kind of row of the fixture, then with a deployment that
    failed for some names (per-row deployment), drifted names, a server whose host name is a
    domain's mail name, and names that JSON escapes or CSV quotes (the general path)."""
    facts, servers, now = await _facts_and_servers(context, hosting["s1"])
    days = settings.expiring_days

    def check(facts, servers, drifted=frozenset()):
        builder = tls_lines.LineBuilder(servers, now, days, drifted)
        json_lines, csv_lines = _reference_lines(facts, servers, now, days, drifted)
        assert [builder.json_line(d) for d in facts] == json_lines
        assert [builder.csv_line(d) for d in facts] == csv_lines
        return json_lines

    lines = check(facts, servers)
    assert len(lines) == 10
    s1 = hosting["s1"]
    server = servers[s1]
    by_name = {d.name: d for d in facts}
    a0, b2 = by_name["a0.example"], by_name["b2.example"]
    failed = [{"service": "mail", "name": "mail.a0.example", "fingerprint": a0.presented["mail"].fingerprint_sha256,
               "code": "key_refused", "message": 'the key, "as said"', "serving": None}]
    agent = dataclasses.replace(server.server, agent_url="https://agent.test:9", hostname="mail.b2.example")
    lines = check(facts, {s1: dataclasses.replace(server, server=agent, failed_names=failed)},
                  {(s1, "mail.a0.example", "mail"), (s1, "", "webmail"), (s1, "webmail.a1.example", "webmail")})
    row = json.loads(lines[0])
    assert row["mail"]["deployment"]["state"] == "failed" and row["mail"]["drifted"]
    odd = [a0._replace(name='we"ird,na\\me\n'), b2._replace(name="été.example"), a0._replace(name="x,y.example")]
    lines = check(odd, servers)
    assert json.loads(lines[0])["domain"] == 'we"ird,na\\me\n'


async def test_rows_kept_between_pages_are_the_rows_of_the_moment(client, admin, hosting, context, settings):
    """The pages keep rows' text and certificates between requests (``tls_lines.RowTexts``,
    ``tls_rows.CertificateCache``), keyed by everything a row is written from: at moments
    before, between and after the certificates' validity (expired, expiring, not yet valid,
    the server's certificate too), with a server whose facts change in between and with drifted
    names, each line is the reference's for that moment and those facts."""
    facts, servers, now = await _facts_and_servers(context, hosting["s1"])
    days = settings.expiring_days
    rows, certificates = tls_lines.RowTexts(size=7), tls_rows.CertificateCache()
    s1 = hosting["s1"]
    moved = {s1: dataclasses.replace(servers[s1], server=dataclasses.replace(servers[s1].server, applied_generation=-1))}
    drifted = {(s1, "mail.a0.example", "mail"), (s1, "", "webmail")}
    for shift, facts_of_server, drift in [(0, servers, set()), (0, moved, set()), (0, servers, drifted),
                                          (-30, servers, set()), (4, servers, set()), (11, servers, set()),
                                          (70, servers, set()), (365, servers, set()), (1000, servers, set()),
                                          (0, servers, set())]:
        moment = now + timedelta(days=shift)
        builder = tls_lines.LineBuilder(facts_of_server, moment, days, drift, certificates=certificates, rows=rows)
        for _ in range(2):  # written, then reused
            assert [builder.json_line(d) for d in facts] == _reference_lines(facts, facts_of_server, moment, days,
                                                                             drift)[0], (shift, drift)


def test_csv_fields_are_quoted_as_the_csv_module_quotes_them():
    values = ["plain", "", " spaced ", "a,b", 'say "hi"', "line\nbreak", "cr\rlf", "tab\there", "é", "'"]
    assert ",".join(tls_lines.csv_field(v) for v in values) + "\r\n" == tls_lines.csv_text([values])


@pytest.mark.parametrize("batch", [3, 5, 1000])
async def test_export_across_batch_boundaries(client, admin, hosting, monkeypatch, batch):
    """10 rows in batches of 3 (a short last batch), 5 (the last batch full: one more statement
    finds nothing) and 1,000 (one batch): the same rows, in order, each once."""
    monkeypatch.setattr(tls_list, "EXPORT_BATCH", batch)
    paged = await _all(client, admin, server_id=hosting["s1"])
    r = await client.get(f"/v1/servers/{hosting['s1']}/domain-tls.ndjson", headers=admin)
    assert [json.loads(line) for line in r.text.splitlines()] == paged
    r = await client.get(f"/v1/servers/{hosting['s1']}/domain-tls.csv", headers=admin)
    records = list(csv.reader(io.StringIO(r.text)))
    assert tuple(records[0]) == CSV_COLUMNS and [rec[0] for rec in records[1:]] == _names(paged)


async def test_drifted_names_per_batch_when_the_server_has_many(client, admin, hosting, context, monkeypatch):
    """Over ``DRIFT_AT_ONCE`` drifted names the export reads them per batch: the same flags."""
    from app.drift.models import ServedObservation

    now = datetime.now(UTC)
    async with context.engine.begin() as conn:
        for hostname, service in (("mail.a0.example", "mail"), ("webmail.b1.example", "webmail"), ("", "webmail")):
            await conn.execute(ServedObservation.__table__.insert().values(
                server_id=hosting["s1"], hostname=hostname, service=service, daemon="nginx", port=443,
                protocol="https", expected="aa" * 32, served="bb" * 32, error=None, drifted=True, observed_at=now))
    monkeypatch.setattr(tls_list, "DRIFT_AT_ONCE", 1)
    monkeypatch.setattr(tls_list, "EXPORT_BATCH", 3)
    paged = await _all(client, admin, server_id=hosting["s1"])
    r = await client.get(f"/v1/servers/{hosting['s1']}/domain-tls.ndjson", headers=admin)
    assert [json.loads(line) for line in r.text.splitlines()] == paged
    flags = {(row["domain"], s) for row in paged for s in ("webmail", "mail") if row[s]["drifted"]}
    assert flags == {("a0.example", "mail"), ("b1.example", "webmail"), ("b2.example", "webmail"),
                     ("b3.example", "webmail")}


async def test_a_customer_exports_its_own_rows_only(client, admin, hosting):
    """Two accounts on server 1: each customer's export holds its own domains, in both formats;
    server 2 hosts none of A's, so A is told it does not exist."""
    for who, mine in (("a", ["a0", "a1", "a2", "a3", "a4", "a5"]), ("b", ["b0", "b1", "b2", "b3"])):
        account = hosting[f"acct_{who}"]
        r = await client.get(f"/v1/servers/{hosting['s1']}/domain-tls.ndjson", headers=hosting[who])
        rows = [json.loads(line) for line in r.text.splitlines()]
        assert _names(rows) == [f"{n}.example" for n in mine]
        assert {row["account_id"] for row in rows} == {account}
        r = await client.get(f"/v1/servers/{hosting['s1']}/domain-tls.csv", headers=hosting[who])
        records = list(csv.reader(io.StringIO(r.text)))[1:]
        assert [rec[0] for rec in records] == [f"{n}.example" for n in mine]
        assert {rec[2] for rec in records} == {account}
    for fmt in ("ndjson", "csv"):
        assert_problem(await client.get(f"/v1/servers/{hosting['s2']}/domain-tls.{fmt}", headers=hosting["a"]),
                       404, "not_found")


async def test_an_export_left_unread_stops_cleanly(client, admin, hosting, context, monkeypatch):
    """A client that goes away after the first batch: the generator is closed while the next
    batch may be encoding; nothing is left waiting and the session is returned."""
    monkeypatch.setattr(tls_list, "EXPORT_BATCH", 2)
    stream = tls_list.export(context, Caller.for_worker("test"), hosting["s1"], "ndjson")
    first = await anext(stream)
    assert len(first.splitlines()) == 2
    await stream.aclose()
    assert context.engine.pool.checkedout() == 0


async def _kept_is_computed(context) -> None:
    """Each domain keeps what ``summarize`` computes from the certificates it presents, as the
    single domain's status reads them (``DomainRepository.facts``: another statement)."""
    async with context.sessionmaker() as session:
        kept = list(await session.execute(select(Domain.name, *tls_upkeep.KEPT).order_by(Domain.name)))
        repo = DomainRepository(session)
        for name, *values in kept:
            facts = await repo.facts(name)
            presented = tuple(facts.presented[s].id for s in SERVICES) + tuple(facts.bound[s] for s in SERVICES)
            assert tuple(values) == (*summarize(name, facts.presented), *presented), name
    assert kept


async def _written(client, admin, hosting, context) -> None:
    await _kept_is_computed(context)
    rows = await _check_filters(client, admin, hosting)
    await _check_sorts(client, admin, rows)
    # the pages keep rows and certificates between requests; the export reads and writes every
    # row afresh: after each write they agree
    exported = [json.loads(line) for s in (hosting["s1"], hosting["s2"])
                for line in (await client.get(f"/v1/servers/{s}/domain-tls.ndjson", headers=admin)).text.splitlines()]
    assert sorted(exported, key=lambda row: row["domain"]) == rows


async def test_kept_facts_follow_every_write(client, admin, hosting, context, test_ca, untrusted_ca):
    """Each write that changes what a domain presents, or what the rules read of it, keeps the
    domains' facts equal to the rules: binds and unbinds of two tenants on one server, the
    server-wide mail certificate and the webmail default (chosen, unset), a replaced (renewed)
    certificate bound to a domain and one that is a server's default, a trust store that
    changes a verdict, a domain added and deleted. After each, every filter and sort is checked
    against the rows the rules compute."""
    from app.certificates.trust import refresh_stored
    from app.kit.trust import TrustStore

    a, b, s1 = hosting["a"], hosting["b"], hosting["s1"]
    await _written(client, admin, hosting, context)
    # tenant B binds b2's webmail; tenant A's a0 leaves its mail to the server's default
    cert = await upload(client, b, test_ca.issue(["webmail.b2.example"], days=33))
    await _bind(client, b, "b2.example", "webmail", cert["id"])
    await _written(client, admin, hosting, context)
    assert (await client.delete("/v1/domains/a0.example/bindings/mail", headers=a)).status_code == 204
    await _written(client, admin, hosting, context)
    # the server-wide mail certificate: every domain of either tenant with a service left to it
    wide = await upload(client, admin, test_ca.issue(["mx1.hosting.test", "mail.b3.example"], days=20))
    r = await client.put(f"/v1/servers/{s1}/mail-certificate", json={"certificate_id": wide["id"]}, headers=admin)
    assert r.status_code == 200, r.text
    await _written(client, admin, hosting, context)
    rows = {row["domain"]: row for row in await _all(client, admin)}
    assert rows["b3.example"]["mail"]["reasons"] == [] and rows["b3.example"]["webmail"]["certificate_id"] == wide["id"]
    # a webmail default of its own, then unset (back to the server-wide mail certificate)
    webmail = await upload(client, admin, self_signed(["mx1.hosting.test", "webmail.b3.example"], days=5))
    r = await client.put(f"/v1/servers/{s1}/webmail-certificate", json={"certificate_id": webmail["id"]},
                         headers=admin)
    assert r.status_code == 200, r.text
    await _written(client, admin, hosting, context)
    assert (await client.delete(f"/v1/servers/{s1}/webmail-certificate", headers=admin)).status_code == 200
    await _written(client, admin, hosting, context)
    # renewals: b1's bound certificate and the server-wide one get new material, later expiry
    b1 = rows["b1.example"]["webmail"]["certificate_id"]
    r = await client.put(f"/v1/certificates/{b1}", json=upload_body(test_ca.issue(["*.b1.example"], days=500)),
                         headers=b)
    assert r.status_code == 200, r.text
    await _written(client, admin, hosting, context)
    r = await client.put(f"/v1/certificates/{wide['id']}",
                         json=upload_body(untrusted_ca.issue(["mx1.hosting.test", "mail.b3.example"], days=7)),
                         headers=admin)
    assert r.status_code == 200, r.text
    await _written(client, admin, hosting, context)
    # the trust store changes: the untrusted issuer's certificates become trusted, then not again
    assert await refresh_stored(context.sessionmaker, TrustStore([test_ca.cert, untrusted_ca.cert])) > 0
    await _written(client, admin, hosting, context)
    rows = {row["domain"]: row for row in await _all(client, admin)}
    assert rows["a2.example"]["client_warning"] is False
    assert await refresh_stored(context.sessionmaker, context.trust) > 0
    await _written(client, admin, hosting, context)
    # a domain added (its server's defaults) and deleted
    await create_domain(client, admin, "a9.example", s1, hosting["acct_a"])
    await _written(client, admin, hosting, context)
    assert (await client.delete("/v1/domains/a9.example", headers=admin)).status_code == 204
    await _written(client, admin, hosting, context)


async def test_time_dependent_reasons_are_decided_at_query_time(hosting, context, settings):
    """Expired and not yet valid depend on the moment, not on what is kept: the same kept
    facts give, at each moment, exactly the rows the rules give at that moment (b0 becomes
    valid after 3 days, a1 expires after 10, most after a year; 30 days ago a4 was valid)."""
    async with context.sessionmaker() as session:
        repo = DomainTlsRepository(session)
        servers = await repo.servers({hosting["s1"], hosting["s2"]})
        for days in (-30, 0, 4, 11, 70, 365, 1000):
            now = utc_now() + timedelta(days=days)
            facts = [row async for batch in repo.batches(TlsFilter(), now, 100) for row in batch]
            rows = [tls_report.row(d, servers[d.server_id], now, settings.expiring_days) for d in facts]
            checks = {**{("reason", r): lambda row, r=r: any(r in row[s]["reasons"] for s in ("webmail", "mail"))
                         for r in REASONS},
                      ("warning", True): lambda row: row["client_warning"],
                      ("warning", False): lambda row: not row["client_warning"]}
            for (key, value), pred in checks.items():
                f = TlsFilter(**{key: value})
                expected = [row["domain"] for row in rows if pred(row)]
                for order in (SortOrder("name", False), SortOrder("not_after", True)):
                    got = [d.name for d in (await repo.page(f, order, None, 1000, now)).rows]
                    assert sorted(got) == expected, (days, key, value, order)
                assert await repo.count(f, now) == len(expected), (days, key, value)
        await session.rollback()
