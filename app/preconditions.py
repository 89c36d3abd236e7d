"""Entity tags and ``If-Match``: concurrent edits that do not overwrite each other.

A resource's ``ETag`` (RFC 9110 section 8.8.3) is a strong, opaque tag made from what the row
stored: its kind, id and ``version`` (app/versioning.py: every UPDATE raises it), so any write
to the row gives a new tag and a deleted and re-created resource (new id) never has an old one.
A binding's tag is made from its row (or from "no binding" when the service presents the
server's default); the bindings document's from both services' tags.

``If-Match`` (RFC 9110 section 13.1.1) is honoured on every write that replaces or deletes:
the services compare it with the current tag *after* taking the row's lock
(``ServerRepository.lock``, ``CertificateRepository.lock``, the no-op ``UPDATE``s every
writer of that row takes first), in the transaction that then writes. Of two requests with the
same tag, the second reads the first one's committed version once the lock is its own, so
exactly one wins and the other gets 412 ``precondition_failed``, on PostgreSQL (row lock, READ
COMMITTED re-reads) as on SQLite (one writer at a time).

The header is optional: a client that sends none keeps the last-writer-wins behaviour of
before, so no existing integration breaks, and 428 ``precondition_required`` (RFC 6585
section 3) is not sent. Weak tags (``W/"..."``) never match: If-Match uses the strong
comparison. ``*`` matches any existing resource.

The tag covers what the row stores, not what a GET computes from other rows or the clock
(warnings, deployment state, a certificate's usages): those are re-derived on every read, and
an unrelated change (another domain's binding, a delivery) must not make an edit fail. For the
same reason these tags never answer ``If-None-Match`` with 304: a cached body could hold stale
warnings (app/conditional.py tags the bytes of other GETs' bodies instead).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Response

from app.problems import AppError


class PreconditionFailed(AppError):
    """``If-Match`` named a state the resource is no longer in (someone changed or deleted it since
    it was read, RFC 9110 section 13.1.1): nothing was written; read it again and retry."""

    status, code, title = 412, "precondition_failed", "The resource changed since you read it"


def entity_tag(kind: str, row_id: str, version: int) -> str:
    """A strong, opaque entity tag (quoted, RFC 9110 section 8.8.3) for one state of a row."""
    digest = hashlib.sha256(f"{kind}\0{row_id}\0{version}".encode()).digest()
    return '"' + base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=") + '"'


def certificate_tag(cert_id: str, version: int) -> str:
    return entity_tag("certificate", cert_id, version)


def server_tag(server_id: str, version: int) -> str:
    return entity_tag("server", server_id, version)


def domain_tag(domain_id: str) -> str:
    """Domains are never changed in place (only created and deleted): the id is the state."""
    return entity_tag("domain", domain_id, 0)


def binding_tag(domain_id: str, service: str, row: tuple[str, int] | None) -> str:
    """``row`` is the binding's (id, version), None when the service presents the default."""
    if row is None:
        return entity_tag("binding-default", f"{domain_id}/{service}", 0)
    return entity_tag("binding", row[0], row[1])


def bindings_tag(domain_id: str, rows: dict[str, tuple[str, int] | None]) -> str:
    """The bindings document's tag: changes when either service's binding does."""
    parts = "|".join(binding_tag(domain_id, s, rows.get(s)) for s in ("webmail", "mail"))
    return entity_tag("bindings", domain_id, int.from_bytes(hashlib.sha256(parts.encode()).digest()[:8], "big"))


def parse_tags(value: str) -> frozenset[str] | None:
    """The strong tags of an If-Match value; None for ``*``. A weak or malformed member is
    kept out (it can never match a strong tag), so a malformed header fails closed (412)."""
    value = value.strip()
    if value == "*":
        return None
    tags = set()
    for part in value.split(","):
        part = part.strip()
        if len(part) >= 2 and part.startswith('"') and part.endswith('"') and '"' not in part[1:-1]:
            tags.add(part)
    return frozenset(tags)


@dataclass(frozen=True)
class Precondition:
    """What the client's If-Match requires; ``NONE`` when it sent none (nothing is required)."""

    header: str | None

    def require(self, *current: str | None) -> None:
        """Raise 412 unless one of the resource's ``current`` tags matches (None: it does not
        exist). Call it after the row's lock is taken, in the transaction that writes."""
        if self.header is None:
            return
        tags = parse_tags(self.header)
        existing = [t for t in current if t is not None]
        if tags is None:
            if existing:
                return
        elif tags.intersection(existing):
            return
        raise PreconditionFailed(
            "If-Match does not match the current ETag: someone changed the resource since you read it; "
            "GET it again and retry with the new ETag"
        )

    @property
    def given(self) -> bool:
        return self.header is not None


NONE = Precondition(None)

IF_MATCH_DESCRIPTION = (
    "Optional. The `ETag` of the state you read (from a GET or the last write's response); the write "
    "happens only if the resource still has it, else 412 `precondition_failed` (RFC 9110 section 13.1.1). "
    "`*` means any existing state. Without it the last writer wins."
)


async def if_match(
    value: Annotated[str | None, Header(alias="If-Match", description=IF_MATCH_DESCRIPTION,
                                        examples=['"mC1b8m3o2GmdQ1UnvJtL0w"'])] = None,
) -> Precondition:
    return Precondition(value)


def tag(response: Response, value: str | None) -> None:
    """Send ``value`` as the response's ETag (nothing when the resource is gone)."""
    if value is not None:
        response.headers["ETag"] = value


IfMatch = Annotated[Precondition, Depends(if_match)]
