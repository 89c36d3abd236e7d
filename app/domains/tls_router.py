"""HTTP for the TLS status of many domains: the panel's domain list and a server's export.

Own paths (``/v1/domain-tls``, ``/v1/servers/{id}/domain-tls.ndjson|.csv``) rather than under
``/v1/domains/``, where a segment would be read as a domain name.
"""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.deps import Context, CurrentCaller, Reader, ReadingCaller, Session, read_inputs
from app.direct import DirectRoute, direct
from app.domains import tls_report
from app.domains.tls_list import (
    DomainTlsService,
    InvalidCursor,
    TlsQuery,
    UnknownServer,
    export,
    memory,
)
from app.domains.tls_rows import DomainTlsRepository
from app.domains.tls_schemas import DOMAIN_TLS_ROW_EXAMPLE, DomainTlsPage, Reason, Sort
from app.paging import plain_page
from app.problems import responses

router = APIRouter(tags=["domains"])


async def get_service(session: Session, ctx: Context) -> DomainTlsService:
    return DomainTlsService(DomainTlsRepository(session), ctx.settings.expiring_days, memory(ctx))


DomainTls = Annotated[DomainTlsService, Depends(get_service)]


async def get_reads(reader: Reader, ctx: Context) -> DomainTlsService:
    """The service over the hot reads' bare connection (app/reads.py): the page runs only
    read-only Core statements, so no ORM session and no transaction pair."""
    return DomainTlsService(DomainTlsRepository(reader), ctx.settings.expiring_days, memory(ctx))


DomainTlsReads = Annotated[DomainTlsService, Depends(get_reads)]

# The declared limits below, which ``_list_inputs`` checks by hand too: one number each.
_ID_LENGTH, _NAME_LENGTH, _CURSOR_LENGTH = 36, 253, 2048
_NAME_PART = {"min_length": 1, "max_length": _NAME_LENGTH}
_REASONS, _SORTS = frozenset(get_args(Reason)), frozenset(get_args(Sort))
_FLAGS = {"true": True, "false": False}


async def _list_inputs(request: Request) -> dict | None:
    """The list's arguments when every parameter is plainly valid as declared below (app/direct.py):
    ids and names within their lengths, ``warning`` and ``count`` ``true`` or ``false``, a
    ``reason`` and a ``sort`` among their values, ``limit`` as ``plain_page`` reads it. None for
    anything else, which FastAPI's solver then validates as before (its 422 and codes)."""
    query = request.query_params
    page = plain_page(query)
    if page is None:
        return None
    get = query.get
    server_id, account_id, prefix, q = get("server_id"), get("account_id"), get("prefix"), get("q")
    warning, reason, sort = get("warning"), get("reason"), get("sort", "name")
    if ((server_id is not None and len(server_id) > _ID_LENGTH)
            or (account_id is not None and len(account_id) > _ID_LENGTH)
            or (prefix is not None and not 0 < len(prefix) <= _NAME_LENGTH)
            or (q is not None and not 0 < len(q) <= _NAME_LENGTH)
            or (warning is not None and warning not in _FLAGS)
            or (reason is not None and reason not in _REASONS)
            or sort not in _SORTS
            or (page.cursor is not None and len(page.cursor) > _CURSOR_LENGTH)):
        return None
    ctx, reader, caller = await read_inputs(request)
    return {"caller": caller, "service": await get_reads(reader, ctx), "server_id": server_id,
            "account_id": account_id, "warning": None if warning is None else _FLAGS[warning], "reason": reason,
            "prefix": prefix, "q": q, "sort": sort, "limit": page.limit, "cursor": page.cursor, "count": page.count}


@direct(_list_inputs)
async def list_domain_tls(
    caller: ReadingCaller,
    service: DomainTlsReads,
    server_id: Annotated[str | None, Query(max_length=_ID_LENGTH, description="Only this server's domains.",
                                           examples=["5f0e4c0a-8d1b-4a3e-9a55-3c3b8f1e2d10"])] = None,
    account_id: Annotated[str | None, Query(
        max_length=_ID_LENGTH, description="Only this account's domains. Customer tokens: their own account's (another "
        "account lists nothing).", examples=["7d1f3a62-0c4e-4b8e-8f2a-6a1c9e5b4f03"])] = None,
    warning: Annotated[bool | None, Query(
        description="`true`: only domains where webmail or mail would warn a client; `false`: only those where "
        "neither would.", examples=[True])] = None,
    reason: Annotated[Reason | None, Query(
        description="Only domains where webmail or mail would warn for this reason.",
        examples=["certificate_expired"])] = None,
    prefix: Annotated[str | None, Query(**_NAME_PART, description="Only names starting with this (A-labels, "
                                        "case-insensitive).", examples=["shop"])] = None,
    q: Annotated[str | None, Query(**_NAME_PART, description="Only names containing this (A-labels, "
                                   "case-insensitive).", examples=["example"])] = None,
    sort: Annotated[Sort, Query(
        description="`name` / `-name`: by domain name; `not_after` / `-not_after`: by the earlier expiry of the "
        "two presented certificates, then name. Any other value is refused (422 `validation_error`).",
        examples=["not_after"])] = "name",
    limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page, 1 to 1000.", examples=[100])] = 100,
    cursor: Annotated[str | None, Query(
        max_length=_CURSOR_LENGTH, description="The `next_cursor` of the previous page, unchanged (opaque; valid for the "
        "same `sort` only). Omit for the first page.", examples=["WyJkb21haW4tdGxzOm5hbWUiLCJleGFtcGxlLmNvbSJd"])] = None,
    count: Annotated[bool, Query(description="`true`: also return `total`, the number of matching domains over "
                                 "all pages (one more query).", examples=[True])] = False,
):
    page = await service.page(caller, TlsQuery(
        server_id=server_id, account_id=account_id, warning=warning, reason=reason, prefix=prefix, q=q,
        sort=sort, cursor=cursor, limit=limit, count=count,
    ))
    return Response(page, media_type="application/json")


# Declared here, where a decorator would have added it: the OpenAPI document keeps its order.
router.add_api_route(
    "/v1/domain-tls", list_domain_tls, methods=["GET"], route_class_override=DirectRoute,
    response_model=DomainTlsPage,
    response_description="A page of domains with the TLS status of their webmail and mail",
    operation_id="listDomainTls",
    summary="List the TLS status of many domains",
    description=(
        "One row per domain with what webmail and mail present (source, certificate, expiry), whether "
        "clients warn and why, the recommended mail client host name and the deployment state: the facts of "
        "`GET /v1/domains/{name}/tls`, computed by the same rules, for a whole domain list in one call. "
        "Filter by server, account (admins), warning, reason and name; sort by name or by the earlier "
        "expiry of the two certificates; keyset pages behind an opaque cursor, with `count=true` for the "
        "total. Customer tokens see their own account's domains only."
    ),
    responses=responses(InvalidCursor),
)


_SERVER = Annotated[str, Path(max_length=_ID_LENGTH, description="The server whose domains to export.",
                              examples=["5f0e4c0a-8d1b-4a3e-9a55-3c3b8f1e2d10"])]
_CSV_EXAMPLE = "".join(",".join(record) + "\r\n" for record in (
    tls_report.CSV_COLUMNS, tls_report.csv_record(DOMAIN_TLS_ROW_EXAMPLE)))
_EXPORT = ("Every row of `GET /v1/domain-tls?server_id=` for the server (a customer token: its own account's "
           "domains on it; 404 for a server that hosts none of them), in name order, streamed as it is read: "
           "{form}. Memory stays flat whatever the number of domains.")


@router.get(
    "/v1/servers/{server_id}/domain-tls.ndjson",
    operation_id="exportDomainTlsNdjson",
    summary="Export a server's domain TLS status as NDJSON",
    description=_EXPORT.format(form="one `DomainTlsRow` JSON object per line (`application/x-ndjson`)"),
    responses={200: {"content": {"application/x-ndjson": {
                         "schema": {"$ref": "#/components/schemas/DomainTlsRow"}, "example": DOMAIN_TLS_ROW_EXAMPLE}},
                     "description": "One JSON row per line."},
               **responses(UnknownServer)},
    response_class=StreamingResponse,
)
async def export_domain_tls_ndjson(server_id: _SERVER, caller: CurrentCaller, service: DomainTls, ctx: Context):
    await service.check_server(caller, server_id)
    return StreamingResponse(export(ctx, caller, server_id, "ndjson"), media_type="application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="domain-tls-{server_id}.ndjson"'})


@router.get(
    "/v1/servers/{server_id}/domain-tls.csv",
    operation_id="exportDomainTlsCsv",
    summary="Export a server's domain TLS status as CSV",
    description=_EXPORT.format(form="RFC 4180 CSV with a header line: a `DomainTlsRow` flattened into the "
                               "columns of the example (`webmail_…`, `mail_…`, `autoconfig_…`); lists are "
                               "space-separated, the deployment is its state and agent code, the autoconfiguration's "
                               "endpoints are `protocol:port:security` (`imap:993:tls`) (`text/csv`)"),
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}}, "description": "CSV with a header."},
               **responses(UnknownServer)},
    response_class=StreamingResponse,
)
async def export_domain_tls_csv(server_id: _SERVER, caller: CurrentCaller, service: DomainTls, ctx: Context):
    await service.check_server(caller, server_id)
    return StreamingResponse(export(ctx, caller, server_id, "csv"), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="domain-tls-{server_id}.csv"'})
