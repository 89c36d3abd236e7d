"""Schema pieces shared by every feature, and the bounds every input gets.

Every request body is a ``Strict`` model, so one validator here refuses control characters in
every string of every body (app/kit/text.py says why); path and query strings get the same check
from ``app.inputs.RefuseControlCharacters``. Multipart form strings use ``Text``. Times that
arrive in a query use ``Instant``, whose bounds keep values that no database column can hold
(year 0 after the UTC shift) out of queries; list cursors are checked the same way
(``app.paging``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, get_args, get_origin

from fastapi import Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import to_json

from app.kit.text import check_text
from app.kit.time import as_utc

MAX_INT32 = 2**31 - 1  # generations are INTEGER columns


class MultiLine:
    """Marks a ``str`` field that may hold TAB, LF and CR (PEM text); other controls stay refused."""

    def __repr__(self) -> str:
        return "MultiLine()"


def _check_strings(value: Any, multiline: bool) -> None:
    if isinstance(value, str):
        check_text(value, multiline=multiline)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _check_strings(item, multiline)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, False)
            _check_strings(item, multiline)


class Strict(BaseModel):
    """Request bodies refuse unknown fields (a typo must not be silently ignored) and control
    characters in any string (app/kit/text.py)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        multiline = field is not None and (
            any(isinstance(m, MultiLine) for m in field.metadata) or _marked_multiline(field.annotation)
        )
        _check_strings(value, multiline)
        return value


def _marked_multiline(annotation: Any) -> bool:
    """``PemText``, also inside ``PemText | None`` (where pydantic keeps the marker in the type)."""
    if get_origin(annotation) is Annotated:
        return any(isinstance(m, MultiLine) for m in get_args(annotation)[1:])
    return any(_marked_multiline(arg) for arg in get_args(annotation))


Text = Annotated[str, AfterValidator(check_text)]
"""A single-line string outside a ``Strict`` body (multipart form fields)."""

def _trimmed_name(value: Any) -> Any:
    """Control characters are judged on the raw value (a trailing tab or CR is refused, not
    trimmed away), then surrounding spaces are dropped before the length check."""
    return check_text(value).strip() if isinstance(value, str) else value


DisplayName = Annotated[str, BeforeValidator(_trimmed_name), StringConstraints(min_length=1, max_length=200)]
"""A name people read in a list (account, server, DNS provider): a name of spaces alone is
refused, and ``Race`` and ``Race `` are one name."""


PemText = Annotated[str, MultiLine()]
"""PEM text in a ``Strict`` body: line breaks allowed, other control characters not."""


def _utc_instant(value: datetime) -> datetime:
    try:
        return as_utc(value)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


Instant = Annotated[datetime, AfterValidator(_utc_instant)]
"""An aware UTC datetime (naive input is taken as UTC); refused when UTC cannot represent it."""

WARNING_CODES = (
    "self_signed", "certificate_untrusted", "certificate_expiring", "certificate_expired",
    "certificate_not_yet_valid", "server_certificate_untrusted", "no_agent", "not_yet_deployed",
    "deployment_failed", "mail_certificates_over_capacity", "chain_differs", "starttls_server_wide",
    "autoconfig_names_not_covered",
)
"""Every warning ``code`` an answer can carry (tests/test_contract.py finds each in the code that
emits it); a new warning adds its code here, so the documented enum stays the closed set."""


class Condition(BaseModel):
    """Why an order, a renewal or a deployment is where it is: one shape for all
    (``app.kit.conditions``)."""

    code: str = Field(description="A stable slug to branch on, e.g. `dns_update_refused`, `agent_unreachable`.",
                      examples=["dns_update_refused"])
    message: str = Field(description="What happened, in English, for people.",
                         examples=["the DNS server refused the update (REFUSED)"])
    step: str | None = Field(None, description="Where in a multi-step process it happened: for an order "
                             "`dns_update`, `http_publish`, `authorization`, `finalize`, `store`, `order`…; for a "
                             "deployment the agent's step (`stage`, `validate`, `reload`, `verify`…).",
                             examples=["dns_update"])
    at: datetime | None = Field(description="When it was observed (UTC); null only for a row written before "
                                "this shape existed whose time is unknown.", examples=["2026-11-30T09:20:00Z"])
    details: dict[str, Any] | None = Field(None, description="What only some conditions carry: an ACME CA's "
                                           "`problem` document (RFC 8555 section 6.7) and `timed_out`; from an "
                                           "agent its HTTP `status`, `daemon`, the daemon's `message`, "
                                           "`rolled_back`, `missing`.", examples=[None])


class WarningOut(BaseModel):
    """Accepted, but worth telling the user: the answer succeeded and this may make clients warn."""

    code: str = Field(
        description="What to warn about: `self_signed`, `certificate_untrusted`, `certificate_expiring`, "
        "`certificate_expired`, `certificate_not_yet_valid` (the certificate; the last two on an upload only), `server_certificate_untrusted` (a per-domain mail certificate does not help while the "
        "server-wide one is untrusted), `no_agent`, `not_yet_deployed`, `deployment_failed` (the server), "
        "`mail_certificates_over_capacity` (Dovecot reloads), `chain_differs` (an identical upload returned the "
        "stored certificate, whose chain differs from the one sent), `starttls_server_wide` (a mail binding behind a "
        "TLS front: the STARTTLS ports present the server-wide certificate; use the implicit-TLS ports), "
        "`autoconfig_names_not_covered` (the certificate served for `autoconfig.<domain>`/`autodiscover.<domain>` "
        "does not name them, so mail clients looking up their settings there meet a certificate error).",
        json_schema_extra={"enum": list(WARNING_CODES)},
        examples=["certificate_expiring"],
    )
    message: str = Field(description="The warning in English, for people.",
                         examples=["The certificate expires in 12 days (2026-12-12)."])


class ModelResponse(Response):
    """The JSON of an answer model, serialised once by pydantic.

    A route declares its ``response_model`` (OpenAPI) and returns ``ModelResponse(model)`` on
    its hot read paths: FastAPI would otherwise validate the returned model against the
    response model, dump it to Python objects and encode those again. The bytes are the same
    (compact JSON, the same field order and formats).
    """

    media_type = "application/json"

    def __init__(self, model: BaseModel, status_code: int = 200) -> None:
        super().__init__(model.model_dump_json(), status_code=status_code)


class JsonResponse(Response):
    """Already-encoded JSON, sent as is (no re-validation, no second encoding).

    The hottest reads (the TLS status, the domain and certificate lists) build their answer as
    dicts in the response model's field order, with the values the model would hold, and encode
    it once with ``pydantic_core.to_json`` (what ``model_dump_json`` writes: compact, ISO 8601
    ``Z`` datetimes) instead of building a model per row; their tests read each body back into
    the model and dump it again: the same bytes."""

    media_type = "application/json"


def page_json(window, items: list) -> JsonResponse:
    """A list's envelope (``app.paging.Page``: items, next_cursor, total) around encoded-ready items."""
    return JsonResponse(to_json({"items": items, "next_cursor": window.next_cursor, "total": window.total}))
