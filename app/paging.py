"""One way to list: keyset pages behind an opaque cursor, in one envelope.

Every list operation answers ``{"items": [...], "next_cursor": str | null, "total": int | null}``
and takes the same three parameters (``PageParams``): ``limit`` (1 to ``MAX_LIMIT``, default
``DEFAULT_LIMIT``), ``cursor`` (the ``next_cursor`` of the previous page) and ``count`` (``true``
adds ``total``, the number of rows matching the filters over all pages; one more query, so off
unless asked).

Pages are keyset pages (the rows after the last one shown, in a total order whose last column is
unique), not offsets: a row added or removed between two requests neither repeats nor skips one,
and a page deep in a list costs what the first costs (the "seek method"; Markus Winand,
https://use-the-index-luke.com/no-offset). The cursor is opaque: base64url (RFC 4648 section 5)
of a JSON array holding the list's name and the sort key of the last row. Clients pass it back
unchanged and never build one; a cursor that does not decode into the key of *this* list is
refused with 422 ``invalid_cursor`` before any query runs, so nothing crafted reaches the
database (a NUL, a year that overflows once in UTC, an integer past the column's width).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import Integer, and_, func, or_, select
from sqlalchemy.sql import Select

from app.kit.text import refused_character
from app.kit.time import as_utc
from app.problems import RuleViolation

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_LENGTH = 2048  # far above any real key (a 253-character name and an id)

T = TypeVar("T")


class InvalidCursor(RuleViolation):
    """The `cursor` is not one this list returned (or it was altered); start again without it."""

    code, title = "invalid_cursor", "The pagination cursor is not valid"


# -- the request -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PageRequest:
    """What a client asked of a list: how many rows, after which, and whether to count."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    count: bool = False


async def page_params(
    limit: Annotated[int, Query(
        ge=1, le=MAX_LIMIT,
        description=f"Rows per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
    )] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(
        description="The `next_cursor` of the previous page, passed back unchanged (it is opaque). "
        "Omit it for the first page. A cursor of another list or a changed one is refused "
        "with 422 `invalid_cursor`.",
    )] = None,
    count: Annotated[bool, Query(
        description="`true`: also return `total`, the number of rows that match the filters over "
        "all pages (one more query). Default `false`, and `total` is null.",
    )] = False,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor, count=count)


PageParams = Annotated[PageRequest, Depends(page_params)]
"""The paging parameters of every list operation."""

_PLAIN_LIMIT = re.compile(r"[1-9][0-9]{0,3}")


def plain_page(query: Mapping[str, str]) -> PageRequest | None:
    """``page_params`` of a query whose paging parameters are plainly valid (absent, ``limit``
    in ASCII digits within bounds, ``count`` ``true`` or ``false``), without FastAPI's solver;
    None for anything else, which the solver then validates (and refuses with its own 422).
    A route resolved by hand (app/direct.py) reads the common case here and the rest as before,
    so both give the same ``PageRequest``. ``query``: the request's query parameters (the last
    of repeated ones, as FastAPI reads a single-valued parameter)."""
    limit, count = query.get("limit"), query.get("count")
    if limit is not None and not (_PLAIN_LIMIT.fullmatch(limit) and int(limit) <= MAX_LIMIT):
        return None
    if count is not None and count not in ("true", "false"):
        return None
    return PageRequest(limit=DEFAULT_LIMIT if limit is None else int(limit), cursor=query.get("cursor"),
                       count=count == "true")


# -- the answer ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window(Generic[T]):
    """One page of rows as a service returns it, before the router shapes each row."""

    rows: list[T]
    next_cursor: str | None
    total: int | None = None


class Page(BaseModel, Generic[T]):
    """The envelope of every list. Subclass it per list (``class ServerPage(Page[ServerOut])``)
    so that each list's schema has its own name in the OpenAPI document."""

    items: list[T] = Field(description="This page's rows, in the list's order.")
    next_cursor: str | None = Field(
        description="Opaque: pass it as `cursor` to get the next page; null on the last page.",
        examples=["WyJkb21haW5zIiwiZXhhbXBsZS5jb20iXQ", None],
    )
    total: int | None = Field(
        description="How many rows match the filters over all pages; only with `count=true`, else null.",
        examples=[1342, None],
    )

    @classmethod
    def of(cls, window: Window, items: Sequence) -> Page:
        return cls(items=list(items), next_cursor=window.next_cursor, total=window.total)


# -- the order and its cursor ----------------------------------------------------------------

@dataclass(frozen=True)
class Order:
    """A list's order: columns all ascending or all descending, the last one unique (an id, or a
    unique name), so that the sort key of the last row shown says exactly where the next page
    starts. ``name`` goes into every cursor, so one list's cursor is refused by another."""

    name: str
    columns: tuple[Any, ...]
    descending: bool = False

    def order_by(self) -> list:
        return [c.desc() if self.descending else c.asc() for c in self.columns]

    def after(self, key: Sequence) -> Any:
        """Rows strictly after ``key`` in this order:
        ``(c1 > k1) OR (c1 = k1 AND c2 > k2) OR ...`` (written out rather than as a row-value
        comparison, which SQLAlchemy would bind without each column's type)."""
        terms = []
        for i, column in enumerate(self.columns):
            beyond = column < key[i] if self.descending else column > key[i]
            terms.append(and_(*[self.columns[j] == key[j] for j in range(i)], beyond))
        return or_(*terms)

    def key_of(self, row: Any) -> tuple:
        return tuple(getattr(row, column.key) for column in self.columns)

    def encode(self, key: Sequence) -> str:
        return pack_cursor(self.name, key)

    def decode(self, cursor: str) -> tuple:
        """The sort key a cursor of this list carries; ``InvalidCursor`` for anything else."""
        data = unpack_cursor(cursor)
        if not isinstance(data, list) or len(data) != len(self.columns) + 1 or data[0] != self.name:
            raise InvalidCursor("the cursor is not one this list returned")
        try:
            return tuple(_typed(column, value) for column, value in zip(self.columns, data[1:], strict=True))
        except (TypeError, ValueError, OverflowError):
            raise InvalidCursor("the cursor is not one this API returned") from None


def pack_cursor(name: str, key: Sequence) -> str:
    """A cursor: base64url (RFC 4648 section 5, unpadded) of the JSON array ``[name, *key]``,
    datetimes as ISO 8601. Every list's cursor is made here, so all of them read alike."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps([name, *values], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def unpack_cursor(cursor: str) -> Any:
    """The JSON a cursor carries, unchecked beyond decoding (the caller checks its shape);
    ``InvalidCursor`` when it is too long or not base64url JSON."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursor("the cursor is not one this API returned")
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        return json.loads(raw.decode())
    except (UnicodeError, ValueError, binascii.Error):
        raise InvalidCursor("the cursor is not one this API returned") from None


def _typed(column: Any, value: Any) -> Any:
    """A cursor value checked against its column, so the query only ever binds what fits."""
    sql_type = getattr(column.type, "impl_instance", column.type)  # a TypeDecorator's underlying type
    kind = sql_type.python_type
    if kind is datetime:
        if not isinstance(value, str):
            raise TypeError(value)
        return as_utc(datetime.fromisoformat(value))  # OverflowError past year 1..9999 in UTC
    if kind is int:
        bits = 31 if type(sql_type) is Integer else 63
        if type(value) is not int or not -(2**bits) <= value < 2**bits:
            raise ValueError(value)
        return value
    if kind is str:
        limit = getattr(sql_type, "length", None) or 1000
        if not isinstance(value, str) or len(value) > limit or refused_character(value) is not None:
            raise ValueError(value)
        return value
    raise TypeError(f"no cursor rule for {kind}")


# -- running a page --------------------------------------------------------------------------

async def fetch(session: Any, stmt: Select, order: Order, page: PageRequest) -> Window:
    """Run one page of ``stmt`` (filtered, not yet ordered or limited) in ``order``.

    One query for the page (``limit + 1`` rows: the extra one says whether there is a next page)
    and, with ``count``, one ``count(*)`` over the same filters. ``stmt`` may select an entity
    (rows are the objects) or columns (rows are named tuples); either way each row has an
    attribute for every column of the order. ``session``: anything with ``AsyncSession``'s
    ``execute`` (the request's session, or the hot reads' ``app.reads.Reads``).
    """
    after = order.decode(page.cursor) if page.cursor else None
    total = None
    if page.count:
        counted = await session.execute(select(func.count()).select_from(stmt.order_by(None).subquery()))
        total = counted.scalar() or 0
    if after is not None:
        stmt = stmt.where(order.after(after))
    stmt = stmt.order_by(*order.order_by()).limit(page.limit + 1)
    descriptions = stmt.column_descriptions
    result = await session.execute(stmt)
    if len(descriptions) == 1 and isinstance(descriptions[0]["expr"], type):
        rows = list(result.scalars())
    else:
        rows = list(result)
    next_cursor = order.encode(order.key_of(rows[page.limit - 1])) if len(rows) > page.limit else None
    return Window(rows[: page.limit], next_cursor, total)
