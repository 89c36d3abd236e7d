import pytest

from app.kit.names import InvalidName, normalise_hostname, parent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.test", "xn--bcher-kva.test"),
        ("MAIL.Bücher.Test.", "mail.xn--bcher-kva.test"),
        ("xn--bcher-kva.test", "xn--bcher-kva.test"),
    ],
)
def test_normalise(raw, expected):
    assert normalise_hostname(raw) == expected


@pytest.mark.parametrize("raw", ["", ".", "localhost", "-a.test", "a-.test", "a..test", "a b.test", "a_b.test", "x" * 64 + ".test", "*.a.test"])
def test_invalid(raw):
    with pytest.raises(InvalidName):
        normalise_hostname(raw)


def test_wildcard_only_when_allowed():
    assert normalise_hostname("*.Bücher.test", allow_wildcard=True) == "*.xn--bcher-kva.test"
    with pytest.raises(InvalidName):
        normalise_hostname("a.*.test", allow_wildcard=True)


def test_parent():
    assert parent("mail.example.com") == "example.com"
    assert parent("example.com") is None
