"""The TLS status of many domains: keyset pages for a panel's domain list, and a streamed export.

``DomainTlsService.page`` answers one page in a fixed number of statements whatever the page's
size (the rows, their certificates, the servers on the page, their drifted names, and with
``count`` a ``count(*)``); ``export`` streams every row of a server in name order,
``EXPORT_BATCH`` rows per statement, so memory does not grow with the server. Rows are
computed by ``tls_report.RowBuilder`` (the pure rules of ``rules.py``, once per distinct input)
and, in the export, written as text by ``tls_lines.LineBuilder``.

An export batch is CPU work without I/O once read (about 1,000 rows' rules and encoding):
it runs in a worker thread (``asyncio.to_thread``) so that the event loop keeps answering
other requests between batches and during one (the interpreter switches threads every few
milliseconds); the reads stay on the loop, and the next batch is read while the thread
encodes the current one (the database's own work, in its process or in SQLite's C code
without the GIL, overlaps the encoding).

The cursor is opaque to clients: base64url (RFC 4648 section 5) of a JSON array of the list's
name with its sort and the last row's sort key (the envelope of every list, issue 9). A cursor
that does not decode into a key of this list and sort is refused (422 ``invalid_cursor``)
before any query runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from pydantic_core import to_json

from app.accounts.caller import Caller
from app.context import AppContext
from app.domains import tls_lines, tls_report
from app.domains.models import SERVICES
from app.domains.rules import service_hostname
from app.domains.tls_rows import (
    CertificateCache,
    DomainTlsFacts,
    DomainTlsRepository,
    SortOrder,
    TlsFilter,
)
from app.drift.repository import DriftRepository
from app.kit.text import refused_character
from app.kit.time import as_utc, utc_now
from app.paging import InvalidCursor, pack_cursor, unpack_cursor
from app.problems import NotFound

EXPORT_BATCH = 1000
DRIFT_AT_ONCE = 10_000  # an export reads a server's drifted names at once up to this many
MAX_NAME = 253


@dataclass(frozen=True)
class TlsQuery:
    """A page request after HTTP: filters, the sort (``name``, ``-name``, ``not_after``,
    ``-not_after``), where to start, how many, and whether to count."""

    server_id: str | None = None
    account_id: str | None = None
    warning: bool | None = None
    reason: str | None = None
    prefix: str | None = None
    q: str | None = None
    sort: str = "name"
    cursor: str | None = None
    limit: int = 100
    count: bool = False


def visible_filter(caller: Caller, query: TlsQuery) -> TlsFilter:
    """The caller's visibility as a filter: an admin sees every account's domains (or the one
    asked for); a customer its own account's only, and naming another account lists nothing,
    as for an account without domains (``Caller.can_see``)."""
    if caller.is_admin:
        account, nothing = query.account_id, False
    else:
        account = caller.account_id
        nothing = account is None or (query.account_id is not None and query.account_id != account)
    return TlsFilter(
        account_id=account, server_id=query.server_id, warning=query.warning, reason=query.reason,
        prefix=query.prefix.lower() if query.prefix else None, q=query.q.lower() if query.q else None,
        nothing=nothing,
    )


def encode_cursor(sort: str, key: tuple) -> str:
    return pack_cursor(f"domain-tls:{sort}", key)


def decode_cursor(sort: str, cursor: str) -> tuple:
    """The key a cursor of this list and sort carries; ``InvalidCursor`` for anything else."""
    order = SortOrder.parse(sort)
    data = unpack_cursor(cursor)
    width = 2 if order.key == "not_after" else 1
    if not isinstance(data, list) or len(data) != width + 1 or data[0] != f"domain-tls:{sort}":
        raise InvalidCursor("the cursor is not one this list returned with this sort")
    name = data[-1]
    if not isinstance(name, str) or len(name) > MAX_NAME or refused_character(name) is not None \
            or not name.isascii():  # stored names are A-labels; a lone surrogate would fail to bind
        raise InvalidCursor("the cursor is not one this API returned")
    if width == 1:
        return (name,)
    try:
        if not isinstance(data[1], str):
            raise TypeError
        return as_utc(datetime.fromisoformat(data[1])), name
    except (TypeError, ValueError, OverflowError):
        raise InvalidCursor("the cursor is not one this API returned") from None


class UnknownServer(NotFound):
    """The export names a server that does not exist (or, for a customer token, one that hosts
    none of its account's domains)."""


@dataclass
class PageMemory:
    """What the pages of one process keep between requests: decoded certificates by row
    version and rows' text by their inputs (``CertificateCache``, ``tls_lines.RowTexts``), each
    bounded. Held by the application's context (``memory``), not the module, so two
    applications in one process (the tests) never share it; the export keeps nothing (it
    writes each row once and would only churn it)."""

    certificates: CertificateCache = field(default_factory=CertificateCache)
    rows: tls_lines.RowTexts = field(default_factory=tls_lines.RowTexts)

    def clear(self) -> None:
        self.certificates.clear()
        self.rows.clear()


def memory(ctx: AppContext) -> PageMemory:
    """The context's ``PageMemory``, made on first use."""
    found = ctx.memo.get("domain_tls_pages")
    if found is None:
        found = ctx.memo["domain_tls_pages"] = PageMemory()
    return found


class DomainTlsService:
    def __init__(self, repo: DomainTlsRepository, expiring_days: int, kept: PageMemory | None = None):
        self.repo = repo
        self.expiring_days = expiring_days
        self.kept = kept or PageMemory()  # without the context's: nothing kept beyond this service

    async def page(self, caller: Caller, query: TlsQuery) -> bytes:
        """The ``DomainTlsPage`` JSON of one page."""
        order = SortOrder.parse(query.sort)
        after = decode_cursor(query.sort, query.cursor) if query.cursor else None
        f = visible_filter(caller, query)
        now = utc_now()
        total = await self.repo.count(f, now) if query.count else None
        page = await self.repo.page(f, order, after, query.limit, now, self.kept.certificates)
        shown = page.rows
        servers = await self.repo.servers({facts.server_id for facts in shown})
        drifted = await _drifted(self.repo.db, shown) if any(s.drifted for s in servers.values()) else set()
        builder = tls_lines.LineBuilder(servers, now, self.expiring_days, drifted, certificates=self.kept.certificates,
                                        rows=self.kept.rows)
        items = ",".join([builder.json_line(facts) for facts in shown])
        next_cursor = None if page.after is None else encode_cursor(query.sort, page.after)
        return page_json(items, next_cursor, total)

    async def check_server(self, caller: Caller, server_id: str) -> None:
        """404 for a server that does not exist and, for a customer, for one that hosts none of
        its account's domains: a customer learns of a server only through its own domains (the
        tenant isolation of every id-taking route, tests/test_access.py)."""
        if caller.is_admin:
            found = await self.repo.server_exists(server_id)
        else:
            found = caller.account_id is not None and await self.repo.hosts_account(server_id, caller.account_id)
        if not found:
            raise UnknownServer("server not found")


async def export(ctx: AppContext, caller: Caller, server_id: str, fmt: str) -> AsyncIterator[bytes]:
    """Every row of the server the caller may see, in name order, as NDJSON lines or CSV.

    Runs after the request's own session has closed (a streamed body outlives the handler), so
    it reads in a session of its own, one keyset batch per statement. Each batch is encoded in
    a worker thread (module docstring) while the next is read on the loop, and sent when
    encoded: at most two batches are held, whatever the number of domains. The server's
    drifted names are read once when they are few (they are: a drift is repaired), else per
    batch.
    """
    query = TlsQuery(server_id=server_id)
    f = visible_filter(caller, query)
    now = utc_now()
    if fmt == "csv":
        yield tls_lines.csv_text([tls_report.CSV_COLUMNS]).encode()
    encoding: asyncio.Future[bytes] | None = None
    try:
        async with ctx.sessionmaker() as session:
            repo = DomainTlsRepository(await session.connection())
            servers = await repo.servers({server_id})
            on_server = await DriftRepository(session).drifted_on(server_id, DRIFT_AT_ONCE)
            async for batch in repo.batches(f, now, EXPORT_BATCH):
                drifted = on_server if on_server is not None else await _drifted(session, batch)
                builder = tls_lines.LineBuilder(servers, now, ctx.settings.expiring_days, drifted)
                previous, encoding = encoding, asyncio.ensure_future(asyncio.to_thread(encode_batch, fmt, builder, batch))
                if previous is not None:
                    yield await previous
            await session.rollback()  # read only: nothing to commit
        if encoding is not None:
            yield await encoding
            encoding = None
    finally:
        if encoding is not None:  # the client went away: the thread finishes, nobody waits for it
            encoding.cancel()


def encode_batch(fmt: str, builder: tls_lines.LineBuilder, batch: list[DomainTlsFacts]) -> bytes:
    """A batch's rows as NDJSON lines or CSV records: CPU only, no I/O (a worker thread's)."""
    if fmt == "csv":
        return "".join([builder.csv_line(facts) for facts in batch]).encode()
    return ("\n".join([builder.json_line(facts) for facts in batch]) + "\n").encode()


async def _drifted(db, rows: list[DomainTlsFacts]) -> set[tuple[str, str, str]]:
    """Which of the rows' names drifted (app/drift): one statement per page or batch. ``db``:
    a session, or the page's ``Reads`` (``execute`` alike)."""
    names = {(facts.server_id, tls_report.drift_name(facts, service, service_hostname(service, facts.name)))
             for facts in rows for service in SERVICES}
    return await DriftRepository(db).drifted_names(names)


def page_json(items: str, next_cursor: str | None, total: int | None) -> bytes:
    """``to_json({"items": [...], "next_cursor": ..., "total": ...})`` around items already
    written as JSON text (``LineBuilder.json_line``, comma-joined): the same bytes as encoding
    the rows as dicts (tests/test_domain_tls_list.py)."""
    return b'{"items":[' + items.encode() + b"]," + to_json({"next_cursor": next_cursor, "total": total})[1:]
