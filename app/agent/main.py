"""``run_agent(config_path)``: what ``certpost agent --config FILE`` runs."""

from __future__ import annotations

import asyncio
import logging
import sys

from app.agent.app import create_agent_app
from app.agent.config import load_config
from app.agent.identity import ensure_agent_tls
from app.agent.service import Agent


def prepare(config_path: str) -> tuple[Agent, str, str, str]:
    """Load the config, create the agent's TLS identity and bootstrap files; no server yet.

    Returns (agent, key path, certificate path, TLS fingerprint). Tests call this in-process
    to write the daemons' first files before they start.
    """
    config = load_config(config_path)
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path, fingerprint = ensure_agent_tls(config.state_dir, config.hostname)
    agent = Agent(config)
    asyncio.run(agent.bootstrap())
    agent.prepare_challenges()
    return agent, str(key_path), str(cert_path), fingerprint


def run_agent(config_path: str) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent, key_path, cert_path, fingerprint = prepare(config_path)
    config = agent.config
    print(f"agent TLS fingerprint: {fingerprint}", flush=True)
    app = create_agent_app(config, Agent(config))
    uvicorn.run(
        app,
        host=config.listen_host,
        port=config.listen_port,
        ssl_keyfile=key_path,
        ssl_certfile=cert_path,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":  # python -m app.agent.main CONFIG
    run_agent(sys.argv[1])
