"""The TOML edits `certpost agent enroll` makes keep everything else in the file."""

import tomllib

import pytest

from app.agent.enrol import EnrolError, parse_listen, parse_pin
from app.agent.tomledit import set_keys

FILE = """\
# the operator's notes
[listen]
host = "127.0.0.1"  # loopback only

[agent]
state_dir = "/var/lib/a"
controller_public_key = "ed25519:old"
# a comment at the end of [agent]

[nginx]
directory = "/etc/nginx/certpost"
verify = [
  {port = 443, protocol = "https"},
]
"""


def test_replaces_adds_and_keeps_the_rest():
    out = set_keys(FILE, "agent", {"controller_public_key": "ed25519:new", "hostname": "mx1.example.net"})
    data = tomllib.loads(out)
    assert data["agent"] == {"state_dir": "/var/lib/a", "controller_public_key": "ed25519:new",
                             "hostname": "mx1.example.net"}
    assert data["nginx"]["verify"] == [{"port": 443, "protocol": "https"}]
    assert "# the operator's notes" in out and "# loopback only" in out and "# a comment at the end" in out
    out = set_keys(out, "listen", {"port": 8750})
    assert tomllib.loads(out)["listen"] == {"host": "127.0.0.1", "port": 8750}


def test_a_missing_section_or_file_is_appended():
    assert tomllib.loads(set_keys("", "agent", {"state_dir": "/x", "n": 1})) == {"agent": {"state_dir": "/x", "n": 1}}
    out = set_keys(FILE, "testing", {"x": 'quote " and \\ back'})
    assert tomllib.loads(out)["testing"] == {"x": 'quote " and \\ back'}
    out = set_keys(FILE, "nginx", {"bundle_group": "www-data"})  # after a multi-line array
    assert tomllib.loads(out)["nginx"]["bundle_group"] == "www-data"


def test_pins_and_listen_addresses():
    assert parse_pin("SHA256:" + ":".join(["AB"] * 32)) == "ab" * 32
    for bad in ("ab" * 32, "sha1:" + "ab" * 20, "sha256:xyz", "sha256:" + "ab" * 31):
        with pytest.raises(EnrolError):
            parse_pin(bad)
    assert parse_listen("0.0.0.0:8750") == ("0.0.0.0", 8750)
    assert parse_listen("[::]:8443") == ("::", 8443)
    for bad in ("8750", "host:", "host:99999"):
        with pytest.raises(EnrolError):
            parse_listen(bad)
