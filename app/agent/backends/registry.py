"""The one map from a section of the agent's configuration file to the backend that serves it.

A new daemon backend is a module with a :class:`~app.agent.backends.base.Backend` subclass
(its ``name`` is its section; its class attributes give the section's defaults) and one entry
here. The configuration parser accepts exactly these sections, and the agent builds its
backends from them in this order, which is the order of every pipeline step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.agent.backends.base import Backend
from app.agent.backends.courier import CourierBackend
from app.agent.backends.dovecot import DovecotBackend
from app.agent.backends.haproxy import HaproxyBackend
from app.agent.backends.nginx import NginxBackend
from app.agent.backends.postfix import PostfixBackend

if TYPE_CHECKING:
    from app.agent.config import AgentConfig

BACKENDS: dict[str, type[Backend]] = {
    kind.name: kind
    for kind in (
        PostfixBackend,
        DovecotBackend,
        NginxBackend,
        CourierBackend,
        HaproxyBackend,
    )
}


def make_backends(config: AgentConfig) -> list[Backend]:
    """One backend per enabled section, with the test hooks' options for it."""
    return [
        BACKENDS[section.name](section, config.testing.backend_options(section.name))
        for section in config.backends
    ]
