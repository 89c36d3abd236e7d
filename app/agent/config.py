"""The agent's configuration file (TOML, read with :mod:`tomllib`); see ``docs/agent.md``.

Parsed into frozen dataclasses by hand rather than pydantic-settings: the file is the only
source, and every error message should name the TOML key that is wrong.
"""

from __future__ import annotations

import grp
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from app.agent.backends.registry import BACKENDS
from app.agent.backends.section import PROTOCOLS, BackendConfig, ConfigError, VerifyTarget
from app.kit.metricsendpoint import MIN_TOKEN_LENGTH, token_digest
from app.kit.names import InvalidName, normalise_hostname
from app.kit.signing import public_key_from_text


@dataclass(frozen=True)
class TestingConfig:
    """Hooks used only by the test suite to force daemon failures (never set in production)."""

    postfix_bundle_cert_first: bool = False
    nginx_bundle_key_only: bool = False

    def backend_options(self, name: str) -> dict:
        """Options the hooks add to backend ``name``'s own (``cert_first`` for Postfix,
        ``key_only`` for nginx: the default's file then lacks the certificate, which nginx
        notices only at the handshake)."""
        if name == "postfix" and self.postfix_bundle_cert_first:
            return {"cert_first": True}
        if name == "nginx" and self.nginx_bundle_key_only:
            return {"key_only": True}
        return {}


# A full ``PUT /v1/config`` at 10,000 domains (each its own certificate, one intermediate,
# names mail.<d> and webmail.<d>) measured 25 MiB with EC P-256 keys, 42 MiB with RSA-2048 and
# 61 MiB with RSA-4096 (docs/agent.md, "Request limits"); 128 MiB leaves room for longer chains.
DEFAULT_MAX_BODY_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class ListenLimits:
    """What one HTTP client may cost the agent before it has proved it is the controller.

    ``max_body_bytes`` is compared with ``Content-Length`` before any body byte is read (413);
    ``header_timeout`` bounds the time from connection (or the end of the previous response)
    to a complete request head, ``body_timeout`` the time to receive a body once accepted,
    ``keepalive_timeout`` an idle kept-alive connection, ``max_connections`` open connections
    plus requests in progress (uvicorn ``limit_concurrency``: 503 above it).
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_timeout: float = 10.0
    body_timeout: float = 120.0
    keepalive_timeout: int = 5
    max_connections: int = 64


@dataclass(frozen=True)
class AgentConfig:
    listen_host: str
    listen_port: int
    state_dir: Path
    controller_public_key: str
    hostname: str
    # One entry per enabled daemon section, in the registry's order (the order of applying).
    sections: dict[str, BackendConfig] = field(default_factory=dict)
    verify_timeout: float = 5.0
    verify_sample: int = 24
    # Drift detection (app/agent/drift.py): a round every drift_interval seconds (0: never),
    # drift_sample bound names per port per round.
    drift_interval: float = 300.0
    drift_sample: int = 24
    max_skew: int = 300
    limits: ListenLimits = ListenLimits()
    testing: TestingConfig = TestingConfig()
    # SHA-256 of the ``[metrics]`` token Prometheus sends to GET /metrics; None: no /metrics
    # (app/kit/metricsendpoint.py says why a token). The token itself is not kept.
    metrics_token_digest: bytes | None = field(default=None, repr=False)

    @property
    def backends(self) -> list[BackendConfig]:
        return list(self.sections.values())

    def __getattr__(self, name: str) -> BackendConfig | None:
        """``config.postfix``, ``config.nginx`` …: a registered section, or None when it is
        absent or disabled (any other unknown attribute is still an AttributeError)."""
        if name in BACKENDS:
            return self.sections.get(name)
        raise AttributeError(name)


def _command(value, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{key} must be a string or a list of strings")


def _verify(items, key: str) -> tuple[VerifyTarget, ...]:
    targets = []
    if items is not None and not isinstance(items, list):
        raise ConfigError(f"{key} must be a list of {{port = ..., protocol = ...}} tables")
    for item in items or []:
        if not isinstance(item, dict):
            raise ConfigError(f"{key} must be a list of {{port = ..., protocol = ...}} tables")
        protocol = item.get("protocol")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{key}: protocol must be one of {', '.join(PROTOCOLS)}")
        if not isinstance(item.get("port"), int):
            raise ConfigError(f"{key}: port must be an integer")
        targets.append(VerifyTarget(item["port"], protocol, item.get("host", "127.0.0.1")))
    return tuple(targets)


def _group(name: str, value) -> str | None:
    """``bundle_group``: an existing group, checked at start rather than at the first apply."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[{name}] bundle_group must be a group name")
    try:
        grp.getgrnam(value)
    except KeyError:
        raise ConfigError(f"[{name}] bundle_group {value!r} is not a group here") from None
    return value


def _backend(name: str, raw: dict | None) -> BackendConfig | None:
    if raw is None:
        return None
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):  # enabled = "no" / "false" / 0 is a string or number
        raise ConfigError(f"[{name}] enabled must be true or false")
    if not enabled:
        return None
    if not isinstance(raw.get("directory"), str) or not raw["directory"]:
        raise ConfigError(f"[{name}] directory is required (a path)")
    directory = Path(raw["directory"])
    for key in ("main_config", "log_file", "config_directory", "certfile"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ConfigError(f"[{name}] {key} must be a path")
    main = Path(raw["main_config"]) if raw.get("main_config") else None
    kind = BACKENDS[name]
    validate, reload = kind.default_commands(main, raw)
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
        bundle_group=_group(name, raw.get("bundle_group", kind.default_bundle_group)),
        options={k: v for k, v in raw.items() if k not in known},
    )


def _number(raw: dict, key: str, default, kind=float, minimum=0, section="listen", maximum=None):
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
        raise ConfigError(f"[{section}] {key} must be a number above {minimum}")
    if kind is int and value != int(value):
        raise ConfigError(f"[{section}] {key} must be a whole number")
    if maximum is not None and value > maximum:
        raise ConfigError(f"[{section}] {key} must be at most {maximum}")
    return kind(value)


def _limits(listen: dict) -> ListenLimits:
    d = ListenLimits()
    return ListenLimits(
        max_body_bytes=_number(listen, "max_body_bytes", d.max_body_bytes, int, 1024),
        header_timeout=_number(listen, "header_timeout", d.header_timeout),
        body_timeout=_number(listen, "body_timeout", d.body_timeout),
        keepalive_timeout=_number(listen, "keepalive_timeout", d.keepalive_timeout, int),
        max_connections=_number(listen, "max_connections", d.max_connections, int),
    )


_SECTIONS = {"listen", "agent", "testing", "metrics", *BACKENDS}
_AGENT_KEYS = {"state_dir", "controller_public_key", "hostname", "verify_timeout", "verify_sample", "max_skew",
               "drift_interval", "drift_sample"}
_LISTEN_KEYS = {"host", "port", "max_body_bytes", "header_timeout", "body_timeout", "keepalive_timeout",
                "max_connections"}


def _drift_interval(agent: dict) -> float:
    """Seconds between drift rounds; 0 turns drift detection off."""
    value = agent.get("drift_interval", 300)
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return _number(agent, "drift_interval", 300, section="agent", minimum=0.1)


def _unknown(section: str, raw: dict, known: set[str]) -> None:
    """A misspelt key or section is an error: ``[ngnix]`` would otherwise leave nginx unmanaged."""
    extra = sorted(set(raw) - known)
    if extra:
        where = f"[{section}] " if section else ""
        raise ConfigError(f"{where}unknown key{'s' if len(extra) > 1 else ''}: {', '.join(extra)}")


def _string(raw: dict, section: str, key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"[{section}] {key} must be a non-empty string")
    return value


def _metrics_token(raw: dict) -> bytes | None:
    """``[metrics] token_file`` (a file holding the token, e.g. ``openssl rand -hex 32``) or
    ``token``: at least MIN_TOKEN_LENGTH characters; absent: the agent serves no /metrics."""
    _unknown("metrics", raw, {"token", "token_file"})
    if "token" in raw and "token_file" in raw:
        raise ConfigError("[metrics] give token or token_file, not both")
    if "token_file" in raw:
        path = Path(_string(raw, "metrics", "token_file"))
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[metrics] token_file {path}: {exc.strerror}") from None
    elif "token" in raw:
        token = _string(raw, "metrics", "token")
    else:
        return None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(f"[metrics] the token must be at least {MIN_TOKEN_LENGTH} characters, without spaces")
    return token_digest(token)


def parse_config(data: dict) -> AgentConfig:
    if "agent" in data:
        _unknown("", data, _SECTIONS)
        _unknown("agent", data["agent"], _AGENT_KEYS)
    agent = data.get("agent", data)
    listen = data.get("listen", {})
    _unknown("listen", listen, _LISTEN_KEYS)
    try:
        agent["state_dir"]
        agent["controller_public_key"]
    except KeyError as exc:
        raise ConfigError(f"[agent] {exc.args[0]} is required") from None
    state_dir = Path(_string(agent, "agent", "state_dir"))
    public_key = _string(agent, "agent", "controller_public_key")
    hostname = _string(agent, "agent", "hostname", "localhost")
    if hostname != "localhost":
        try:
            hostname = normalise_hostname(hostname)
        except InvalidName:
            raise ConfigError(f"[agent] hostname {hostname!r} is not a host name") from None
    testing = data.get("testing", {})
    return AgentConfig(
        listen_host=_string(listen, "listen", "host", "0.0.0.0"),
        listen_port=_number(listen, "port", 8750, int, 0, maximum=65535),
        state_dir=state_dir,
        controller_public_key=public_key,
        hostname=hostname,
        sections={
            name: section
            for name in BACKENDS
            if (section := _backend(name, data.get(name))) is not None
        },
        verify_timeout=_number(agent, "verify_timeout", 5.0, section="agent"),
        verify_sample=_number(agent, "verify_sample", 24, int, section="agent"),
        drift_interval=_drift_interval(agent),
        drift_sample=_number(agent, "drift_sample", 24, int, section="agent"),
        max_skew=_number(agent, "max_skew", 300, int, section="agent"),
        limits=_limits(listen),
        testing=TestingConfig(
            postfix_bundle_cert_first=bool(testing.get("postfix_bundle_cert_first", False)),
            nginx_bundle_key_only=bool(testing.get("nginx_bundle_key_only", False)),
        ),
        metrics_token_digest=_metrics_token(data.get("metrics", {})),
    )


def load_config(path: str | Path) -> AgentConfig:
    with open(path, "rb") as file:
        try:
            data = tomllib.load(file)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    config = parse_config(data)
    # Checked here, when the agent starts from its file, rather than at the first request.
    try:
        public_key_from_text(str(config.controller_public_key))
    except ValueError as exc:
        raise ConfigError(f"[agent] controller_public_key: {exc}") from None
    return config
