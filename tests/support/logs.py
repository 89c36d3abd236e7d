"""Reading the JSON log lines `certpost serve`, `worker` and `agent` write to stderr."""

from __future__ import annotations

import json


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as a JSON object; a line that is not one fails the test (the
    format promises one object per line, nothing else)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        assert isinstance(record, dict), line
        out.append(record)
    return out


def has_line(text: str, logger: str, starts: str) -> bool:
    """Whether a JSON line of ``logger`` has a message starting with ``starts``."""
    return any(r.get("logger") == logger and str(r.get("message", "")).startswith(starts)
               for r in json_lines(text))
