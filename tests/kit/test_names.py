"""The one host-name validator (app/kit/names.py), shared by the controller and the agent."""

from __future__ import annotations

import pytest

from app.kit.names import InvalidName, is_canonical, normalise_hostname, parent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.test", "xn--bcher-kva.test"),
        ("MAIL.Bücher.Test.", "mail.xn--bcher-kva.test"),
        ("xn--bcher-kva.test", "xn--bcher-kva.test"),
        ("XN--BCHER-KVA.test", "xn--bcher-kva.test"),
        # IDNA 2008 (non-transitional UTS #46): ß stays ß; IDNA 2003 would give fass.test
        ("faß.test", "xn--fa-hia.test"),
        ("xn--fa-hia.test", "xn--fa-hia.test"),
        # UTS #46 mapping: full-width letters and the ideographic full stop
        ("ＥＸＡＭＰＬＥ。com", "example.com"),
        ("1.2.3.4.test", "1.2.3.4.test"),
        ("a" * 63 + ".test", "a" * 63 + ".test"),
    ],
)
def test_normalise(raw, expected):
    assert normalise_hostname(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "..",
        "localhost",
        "-a.test",
        "a-.test",
        "a..test",
        "example.com..",
        "a b.test",
        "a_b.test",
        "x" * 64 + ".test",
        "*.a.test",
        # a final newline: the bug of issue 7 (a regex `$` matched before it)
        "evil.test\n",
        "evil.test\n.",
        "evil\n.test",
        " example.com",
        "example.com\t",
        "exa\x00mple.com",
        "exa\x7fmple.com",
        "exa\u0085mple.com",
        "exa\r\nmple.com",
        # invalid A-labels are refused, not stored as opaque ASCII
        "xn--zz.test",
        "xn--.test",
        "ab--cd.test",
        # IDNA 2008 refuses what 2003 allowed, and contextual rules apply
        "x\u200dy.test",
        "a;b.test",
        "a/b.test",
        "a{b}.test",
        ("a" * 60 + ".") * 5 + "test",
        "x" * 5000,
    ],
)
def test_invalid(raw):
    with pytest.raises(InvalidName):
        normalise_hostname(raw)


def test_wildcard_only_when_allowed():
    assert normalise_hostname("*.Bücher.test", allow_wildcard=True) == "*.xn--bcher-kva.test"
    for raw in ("a.*.test", "*a.test", "**.test", "*", "*.", "*.test\n"):
        with pytest.raises(InvalidName):
            normalise_hostname(raw, allow_wildcard=True)


@pytest.mark.parametrize(
    ("name", "wildcard", "expected"),
    [
        ("mail.example.test", False, True),
        ("xn--fa-hia.test", False, True),
        ("*.example.test", True, True),
        ("*.example.test", False, False),
        ("Mail.example.test", False, False),
        ("example.test.", False, False),
        ("faß.test", False, False),
        ("evil.test\n", False, False),
        ("xn--zz.test", False, False),
        ("a_b.test", False, False),
    ],
)
def test_is_canonical(name, wildcard, expected):
    assert is_canonical(name, allow_wildcard=wildcard) is expected


def test_parent():
    assert parent("mail.example.com") == "example.com"
    assert parent("example.com") is None
