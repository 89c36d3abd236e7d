"""deploy/*.service: valid systemd units that run the commands the README documents.

``systemd-analyze verify`` parses each unit and checks that every Exec* binary exists; the
units name /opt/certpost/bin/certpost (docs/agent.md "Installing on Debian"), so the test points
a copy at this environment's console script. systemd does not run as PID 1 here: the hardening
is checked for syntax, not exercised at runtime.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from app.cli import build_parser
from tests.support.daemons import certpost_command

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = ("certpost.service", "certpost-worker.service", "certpost-agent.service")
INSTALLED = "/opt/certpost/bin/certpost"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read_string((DEPLOY / name).read_text())
    return parser


def _execs(name: str) -> list[list[str]]:
    lines = (DEPLOY / name).read_text().splitlines()
    return [shlex.split(line.split("=", 1)[1]) for line in lines if line.startswith("Exec")]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", UNITS)
def test_unit_verifies(name, tmp_path):
    copy = tmp_path / name
    copy.write_text((DEPLOY / name).read_text().replace(INSTALLED, certpost_command()))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr


@pytest.mark.parametrize("name", UNITS)
def test_units_run_documented_commands(name):
    """Each Exec* line is the installed `certpost` with arguments the command accepts."""
    execs = _execs(name)
    assert execs
    for argv in execs:
        assert argv[0] == INSTALLED
        build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown argument


def test_hardening_each_unit_tolerates():
    for name in ("certpost.service", "certpost-worker.service"):
        service = _unit(name)["Service"]
        assert service["User"] == "certpost" and service["StateDirectory"] == "certpost"
        for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
            assert service[key] == "yes", (name, key)
        assert service["ProtectSystem"] == "strict"
    agent = _unit("certpost-agent.service")
    service = agent["Service"]
    assert service["User"] == "root" and service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes" and service["PrivateTmp"] == "yes"
    assert "--prepare-only" in service["ExecStartPre"]
    assert set(agent["Unit"]["Before"].split()) == {
        "postfix.service", "dovecot.service", "nginx.service"
    }
    written = " ".join(
        line.split("=", 1)[1]
        for line in (DEPLOY / "certpost-agent.service").read_text().splitlines()
        if line.startswith("ReadWritePaths=")
    ).split()
    # the directories docs/agent.md configures, and nothing broader than a daemon's own tree
    assert "-/etc/postfix/certpost" in written
    assert not {"/", "/etc", "-/etc", "/var", "-/var"} & set(written)
