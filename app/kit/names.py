"""Host name normalisation: lower case, IDNA A-labels, no trailing dot.

Certificates carry A-labels (RFC 5280 section 7.2), so every name is compared in that form.
Python's ``idna`` codec implements IDNA 2003; the lower-casing and per-label checks below keep
the result within the LDH rules of RFC 1123 section 2.1 and RFC 5891.
"""

from __future__ import annotations

import re

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidName(ValueError):
    code = "invalid_name"


def normalise_hostname(name: str, *, allow_wildcard: bool = False) -> str:
    """Return ``name`` as lower-case A-labels without a trailing dot, or raise InvalidName.

    ``allow_wildcard`` admits a single ``*`` as the whole left-most label (certificate SANs).
    """
    text = name.strip().rstrip(".")
    if not text:
        raise InvalidName("the name is empty")
    labels = text.split(".")
    wildcard = labels[0] == "*"
    if wildcard and not allow_wildcard:
        raise InvalidName("a wildcard is not allowed here")
    rest = labels[1:] if wildcard else labels
    out: list[str] = []
    for label in rest:
        out.append(_to_a_label(label))
    if len(out) < 2:
        raise InvalidName("the name needs at least two labels (for example example.com)")
    result = ".".join((["*"] if wildcard else []) + out)
    if len(result) > 253:
        raise InvalidName("the name is longer than 253 characters")
    return result


def _to_a_label(label: str) -> str:
    if not label:
        raise InvalidName("the name has an empty label")
    if "*" in label:
        raise InvalidName("a wildcard may only be the whole left-most label")
    lowered = label.lower()
    if lowered.isascii():
        a_label = lowered
    else:
        try:
            a_label = lowered.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidName(f"the label {label!r} is not a valid internationalised name") from None
    if not _LABEL.match(a_label):
        raise InvalidName(f"the label {label!r} is not a valid host name label")
    return a_label


def parent(name: str) -> str | None:
    """``mail.example.com`` -> ``example.com``; None when fewer than two labels would remain."""
    rest = name.partition(".")[2]
    return rest if "." in rest else None
