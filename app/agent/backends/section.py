"""What every ``[<daemon>]`` section of the agent's configuration file becomes.

Kept apart from :mod:`app.agent.config` so that the backends, which read these settings, and
the registry (:mod:`app.agent.backends.registry`), which the configuration parser reads for
the known sections, import no module that imports them back.
"""

from __future__ import annotations

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
    ``options`` are the section's other keys, which only the backend itself reads.
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
