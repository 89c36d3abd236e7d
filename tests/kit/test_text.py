"""The character rule for API strings (app/kit/text.py)."""

from __future__ import annotations

import re

import pytest

from app.kit.text import check_text, refused_character


@pytest.mark.parametrize("text", ["", "plain", "Bücher GmbH", "ok with spaces", "emoji 🙂", "\u00a0nbsp", "\u200b"])
def test_clean_text(text):
    assert refused_character(text) is None
    assert check_text(text) == text


@pytest.mark.parametrize(
    ("text", "found"),
    [("a\x00", "U+0000"), ("a\nb", "U+000A"), ("\r", "U+000D"), ("\t", "U+0009"), ("\x1b[2J", "U+001B"),
     ("\x7f", "U+007F"), ("\x85", "U+0085"), ("\x9f", "U+009F"), ("\ud800", "U+D800"),
     ("a\u2028b", "U+2028"), ("a\u2029b", "U+2029"), ("evil\u202egnp.exe", "U+202E"), ("\u202a", "U+202A"),
     ("x\u2066y\u2069", "U+2066"), ("\u2069", "U+2069")],
)
def test_refused(text, found):
    assert refused_character(text) == found
    with pytest.raises(ValueError, match=re.escape(found)) as info:
        check_text(text)
    assert text not in str(info.value)


def test_multiline_allows_line_breaks_and_tabs_only():
    assert refused_character("-----BEGIN\r\nabc\tdef\n", multiline=True) is None
    assert refused_character("abc\x00", multiline=True) == "U+0000"
    assert refused_character("abc\x0b", multiline=True) == "U+000B"
    assert refused_character("abc\x1b", multiline=True) == "U+001B"
    assert refused_character("abc\u202e", multiline=True) == "U+202E"
