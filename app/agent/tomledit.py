"""Setting a few scalar keys in a TOML file's text, keeping every other line and comment.

Pure functions. Enough for the keys ``certpost agent enroll`` writes (strings and integers on
one line each); the result is always parsed again by the caller before it is written.
"""

from __future__ import annotations

import json
import re

_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def _value(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError("only strings and integers")
    return str(value) if isinstance(value, int) else json.dumps(value)  # JSON strings are TOML basic strings


def set_keys(text: str, section: str, values: dict[str, str | int]) -> str:
    """``text`` with ``key = value`` for each of ``values`` in ``[section]``: an existing line of
    that key is replaced, a missing one added after the section's last key, a missing section
    appended at the end."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if (m := _HEADER.match(line)) and m.group(1).strip() == section), None)
    if start is None:
        block = [f"[{section}]", *(f"{key} = {_value(v)}" for key, v in values.items())]
        body = "\n".join(lines).rstrip("\n")
        return (body + "\n\n" if body else "") + "\n".join(block) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    missing = []
    for key, value in values.items():
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        found = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
        if found is None:
            missing.append(f"{key} = {_value(value)}")
        else:
            lines[found] = f"{key} = {_value(value)}"
    last = max((i for i in range(start, end) if lines[i].strip() and not lines[i].lstrip().startswith("#")),
               default=start)
    lines[last + 1:last + 1] = missing
    return "\n".join(lines) + "\n"
