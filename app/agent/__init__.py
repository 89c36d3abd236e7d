"""The certpost agent: the small daemon on each mail server (see docs/agent.md).

Public entry points: :func:`run_agent` (``certpost agent --config FILE``) and
:func:`create_agent_app`. Imports are lazy so that importing the package builds nothing.
"""

from __future__ import annotations


def run_agent(config_path: str) -> None:
    from app.agent.main import run_agent as _run

    _run(config_path)


def create_agent_app(config):
    from app.agent.app import create_agent_app as _create

    return _create(config)


__all__ = ["create_agent_app", "run_agent"]
