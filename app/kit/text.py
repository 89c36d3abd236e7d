"""Which characters an API string may hold: no control characters, no lone surrogates.

A control character in a name, a description or a setting ends up in a log line, a daemon's
configuration file or a database column: a NUL is refused by PostgreSQL (``text`` cannot hold
it, so the request would fail late with a 500), a newline splits a configuration line, and an
escape sequence rewrites an operator's terminal. Unicode category Cc (C0, DEL, C1) is refused
everywhere; multi-line text (PEM) may hold TAB, LF and CR. A lone surrogate (category Cs) is
not a character at all and cannot be encoded as UTF-8 (RFC 3629 section 3), so it goes too.
So do U+2028/U+2029 (line and paragraph separators: ``str.splitlines()`` and many log viewers
break lines at them) and the bidirectional embedding, override and isolate controls
U+202A-U+202E and U+2066-U+2069, which reorder what an operator sees ("Trojan Source",
CVE-2021-42574: an account named ``evil<U+202E>gnp.exe`` displays as ``evilexe.png``). Other
format characters (ZWJ, ZWNJ, ZWSP) stay allowed: scripts need them in ordinary names.
"""

from __future__ import annotations

import re

_REFUSED = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_REFUSED_MULTILINE = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def refused_character(text: str, *, multiline: bool = False) -> str | None:
    """The first character ``text`` may not hold, as ``U+XXXX``; None when it is clean."""
    match = (_REFUSED_MULTILINE if multiline else _REFUSED).search(text)
    return None if match is None else f"U+{ord(match.group()):04X}"


def check_text(text: str, *, multiline: bool = False) -> str:
    """``text`` itself, or ValueError naming the refused character (never echoing the text)."""
    bad = refused_character(text, multiline=multiline)
    if bad is not None:
        raise ValueError(f"control characters are not allowed (found {bad})")
    return text
