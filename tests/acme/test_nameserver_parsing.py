import pytest

from app.acme.service import parse_nameserver


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.1", ("192.0.2.1", 53)),
    ("192.0.2.1:5353", ("192.0.2.1", 5353)),
    ("2001:db8::1", ("2001:db8::1", 53)),
    ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
])
def test_parse(text, expected):
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize("text", ["ns1.example", "192.0.2.1:0", "192.0.2.1:x", "[::1]:99999"])
def test_refused(text):
    with pytest.raises(ValueError):
        parse_nameserver(text)
