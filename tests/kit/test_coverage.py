"""covers(): RFC 6125 section 6.4.3 wildcards, one left-most label only."""

import pytest

from app.kit.coverage import (
    candidate_sans,
    covers,
    is_public_suffix,
    name_covers,
    public_suffix_wildcard_for,
)


@pytest.mark.parametrize(
    ("san", "host", "expected"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("*.example.com", "mail.example.com", True),
        ("*.example.com", "webmail.example.com", True),
        ("*.example.com", "example.com", False),  # the base name is not covered
        ("*.example.com", "a.mail.example.com", False),  # exactly one label
        ("*.mail.example.com", "mail.example.com", False),
        ("example.com", "mail.example.com", False),
        ("mail.example.com", "webmail.example.com", False),
        ("w*.example.com", "webmail.example.com", False),  # partial-label wildcards cover nothing
        ("*.xn--bcher-kva.test", "mail.xn--bcher-kva.test", True),
        ("*.example.com", "*.example.com", True),
        ("*.com", "example.com", False),  # wildcards on a public suffix cover nothing
        ("*.co.uk", "example.co.uk", False),
        ("*.test", "a.test", False),  # an unknown TLD counts as a public suffix
        ("*.github.io", "me.github.io", True),  # the PSL's private section is not used
        ("*.example.co.uk", "mail.example.co.uk", True),
    ],
)
def test_name_covers(san, host, expected):
    assert name_covers(san, host) is expected


def test_covers_any():
    assert covers(["a.test", "*.a.test"], "mail.a.test")
    assert covers(["a.test", "*.a.test"], "a.test")
    assert not covers([], "a.test")


def test_candidate_sans():
    assert candidate_sans("mail.example.com") == ["mail.example.com", "*.example.com"]
    assert candidate_sans("example.com") == ["example.com"]
    assert candidate_sans("mail.co.uk") == ["mail.co.uk"]


def test_public_suffixes_offline():
    assert is_public_suffix("com") and is_public_suffix("co.uk") and is_public_suffix("test")
    assert not is_public_suffix("example.com") and not is_public_suffix("example.co.uk")
    assert public_suffix_wildcard_for(["*.co.uk"], "webmail.co.uk") == "*.co.uk"
    assert public_suffix_wildcard_for(["*.a.test"], "webmail.a.test") is None
