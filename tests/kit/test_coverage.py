"""covers(): RFC 6125 section 6.4.3 wildcards, one left-most label only."""

import pytest

from app.kit.coverage import candidate_sans, covers, name_covers


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
