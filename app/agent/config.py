"""The agent's configuration file (TOML, read with :mod:`tomllib`); see ``docs/agent.md``.

Parsed into frozen dataclasses by hand rather than pydantic-settings: the file is the only
source, and every error message should name the TOML key that is wrong.
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PROTOCOLS = (
    "smtp-starttls",
    "smtps",
    "imap-starttls",
    "imaps",
    "pop3-starttls",
    "pop3s",
    "https",
)


class ConfigError(ValueError):
    """The agent configuration file is missing a key or has a wrong value."""


@dataclass(frozen=True)
class VerifyTarget:
    """A local port whose served certificate the agent checks after every change."""

    port: int
    protocol: str
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class BackendConfig:
    """Settings common to every daemon backend.

    ``directory`` holds every file the agent writes for this daemon (its include file or map,
    and its copies of the bundles under ``bundles/``); nothing else in it is touched.
    """

    name: str
    directory: Path
    main_config: Path | None
    validate: tuple[str, ...]
    reload: tuple[str, ...]
    verify: tuple[VerifyTarget, ...]
    log_file: Path | None = None
    bundle_group: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TestingConfig:
    """Hooks used only by the test suite to force daemon failures (never set in production)."""

    postfix_bundle_cert_first: bool = False


@dataclass(frozen=True)
class AgentConfig:
    listen_host: str
    listen_port: int
    state_dir: Path
    controller_public_key: str
    hostname: str
    postfix: BackendConfig | None = None
    dovecot: BackendConfig | None = None
    nginx: BackendConfig | None = None
    courier: BackendConfig | None = None
    verify_timeout: float = 5.0
    verify_sample: int = 24
    max_skew: int = 300
    testing: TestingConfig = TestingConfig()

    @property
    def backends(self) -> list[BackendConfig]:
        return [b for b in (self.postfix, self.dovecot, self.nginx, self.courier) if b is not None]


def _command(value, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{key} must be a string or a list of strings")


def _verify(items, key: str) -> tuple[VerifyTarget, ...]:
    targets = []
    for item in items or []:
        protocol = item.get("protocol")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{key}: protocol must be one of {', '.join(PROTOCOLS)}")
        if not isinstance(item.get("port"), int):
            raise ConfigError(f"{key}: port must be an integer")
        targets.append(VerifyTarget(item["port"], protocol, item.get("host", "127.0.0.1")))
    return tuple(targets)


_DEFAULT_MAIN = {"postfix": "main.cf", "dovecot": "dovecot.conf", "nginx": "nginx.conf"}


def _default_commands(name: str, main: Path | None, raw: dict) -> tuple[list[str], list[str]]:
    """The stock validate and reload commands; ``{config}`` becomes the config being checked."""
    if name == "postfix":
        confdir = str(raw.get("config_directory") or main or "/etc/postfix")
        return [], ["postfix", "-c", confdir, "reload"]
    if name == "dovecot":
        conf = str(main or "/etc/dovecot/dovecot.conf")
        return ["doveconf", "-x", "-n", "-c", "{config}"], ["doveadm", "-c", conf, "reload"]
    if name == "courier":
        return [], []  # couriertls reads the files on every connection: nothing to reload
    conf = str(main or "/etc/nginx/nginx.conf")
    return ["nginx", "-t", "-q", "-c", "{config}"], ["nginx", "-c", conf, "-s", "reload"]


def _backend(name: str, raw: dict | None) -> BackendConfig | None:
    if raw is None or not raw.get("enabled", True):
        return None
    try:
        directory = Path(raw["directory"])
    except KeyError:
        raise ConfigError(f"[{name}] directory is required") from None
    main = Path(raw["main_config"]) if raw.get("main_config") else None
    validate, reload = _default_commands(name, main, raw)
    known = {
        "enabled",
        "directory",
        "main_config",
        "validate",
        "reload",
        "verify",
        "log_file",
        "bundle_group",
    }
    return BackendConfig(
        name=name,
        directory=directory,
        main_config=main,
        validate=_command(raw.get("validate", validate), f"[{name}] validate"),
        reload=_command(raw.get("reload", reload), f"[{name}] reload"),
        verify=_verify(raw.get("verify"), f"[{name}] verify"),
        log_file=Path(raw["log_file"]) if raw.get("log_file") else None,
        bundle_group=raw.get("bundle_group", "courier" if name == "courier" else None) or None,
        options={k: v for k, v in raw.items() if k not in known},
    )


def parse_config(data: dict) -> AgentConfig:
    agent = data.get("agent", data)
    listen = data.get("listen", {})
    try:
        state_dir = Path(agent["state_dir"])
        public_key = agent["controller_public_key"]
    except KeyError as exc:
        raise ConfigError(f"{exc.args[0]} is required") from None
    testing = data.get("testing", {})
    return AgentConfig(
        listen_host=listen.get("host", "0.0.0.0"),
        listen_port=int(listen.get("port", 8750)),
        state_dir=state_dir,
        controller_public_key=public_key,
        hostname=agent.get("hostname", "localhost"),
        postfix=_backend("postfix", data.get("postfix")),
        dovecot=_backend("dovecot", data.get("dovecot")),
        nginx=_backend("nginx", data.get("nginx")),
        courier=_backend("courier", data.get("courier")),
        verify_timeout=float(agent.get("verify_timeout", 5.0)),
        verify_sample=int(agent.get("verify_sample", 24)),
        max_skew=int(agent.get("max_skew", 300)),
        testing=TestingConfig(
            postfix_bundle_cert_first=bool(testing.get("postfix_bundle_cert_first", False))
        ),
    )


def load_config(path: str | Path) -> AgentConfig:
    with open(path, "rb") as file:
        return parse_config(tomllib.load(file))
