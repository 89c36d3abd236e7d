"""Log lines for machines and for people, on the controller and the agent alike.

``certpost serve``, ``certpost worker`` and ``certpost agent`` write one JSON object per line to
stderr by default (``--log-format text`` or ``CERTPOST_LOG_FORMAT=text`` for the classic line):
``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``, and, while a request
is handled, ``request_id``; the access line of each request adds ``method``, ``route`` (the
route's template, never the raw path with its ids), ``status`` and ``duration_ms``
(:mod:`app.kit.requestlog`). A collector (Loki, Vector, journald's JSON export) reads every
field without a regular expression, and joins the lines of one request by ``request_id``.

No secret may reach a log line, whichever code writes it: nothing logs headers or bodies, and
as a second line of defence every message and traceback passes :func:`redact`, which masks PEM
blocks (private keys, and certificates with them), bearer credentials and certpost API tokens.

Nothing here runs at import; :func:`configure` is called once by the CLI.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys

FORMATS = ("json", "text")

# The request being handled, set by app.kit.requestlog for the whole of the request (and the
# tasks it starts), so a warning a service logs carries the id of the request that caused it.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("certpost_request_id", default=None)

# The extra attributes an access line carries (``logger.info(..., extra={...})``), in this order.
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?(?:-----END \1-----|\Z)", re.DOTALL)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_API_TOKEN = re.compile(r"\bcpt_([A-Za-z0-9]+)_[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    """``text`` with PEM blocks, ``Bearer``/``Basic`` credentials and API token secrets masked.

    A token keeps its id (``cpt_<id>_…``, the part `certpost tokens list` shows), so a line
    still says which token was involved without giving it away."""
    if "-----BEGIN" in text:
        text = _PEM.sub(lambda m: f"[{m.group(1).lower()} redacted]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)
    return _API_TOKEN.sub(lambda m: f"cpt_{m.group(1)}_[redacted]", text)


def _time(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic ``time LEVEL logger: message`` line, redacted the same way, with the request
    id in brackets while a request is handled."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        text = redact(super().format(record))
        return f"{text} [request {request_id}]" if request_id else text


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    """Route every logger (uvicorn's included, which the CLI starts with ``log_config=None``)
    to one stderr handler with the chosen formatter; replaces whatever was installed before."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python's warnings as log lines too, not bare stderr text
    if fmt == "json":
        _quiet_resource_tracker()


# multiprocessing's resource tracker is a process of its own that inherits stderr and warns there,
# in plain text, about the semaphores of the certificate reader's workers, which the server
# terminates on purpose at shutdown (app/certificates/reading.py) and which the tracker then
# cleans up itself: a notice that would break one-object-per-line and says nothing to act on.
_TRACKER_NOTICE = "ignore:resource_tracker:UserWarning"


def _quiet_resource_tracker() -> None:
    """Pass the filter to processes started from now on (the tracker reads PYTHONWARNINGS)."""
    current = os.environ.get("PYTHONWARNINGS", "")
    if _TRACKER_NOTICE not in current.split(","):
        os.environ["PYTHONWARNINGS"] = f"{current},{_TRACKER_NOTICE}" if current else _TRACKER_NOTICE
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
