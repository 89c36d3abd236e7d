"""What ``certpost agent --config FILE`` runs: :func:`run_agent`, and :func:`prepare_only` for
``certpost agent --config FILE --prepare-only``."""

from __future__ import annotations

import asyncio
import logging
import sys

from app.agent.app import create_agent_app
from app.agent.config import AgentConfig, load_config
from app.agent.identity import ensure_agent_tls
from app.agent.service import Agent


def prepare(config_path: str) -> tuple[Agent, str, str, str]:
    """Load the config, create the agent's TLS identity and bootstrap files; no server yet.

    Returns (agent, key path, certificate path, TLS fingerprint). The bootstrap files (a
    self-signed bundle for the server's host name, until the controller pushes real ones) are
    what Postfix, Dovecot and nginx need to start at all on a fresh server.
    """
    config = load_config(config_path)
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path, fingerprint = ensure_agent_tls(config.state_dir, config.hostname)
    agent = Agent(config)
    asyncio.run(agent.bootstrap())
    agent.prepare_challenges()
    return agent, str(key_path), str(cert_path), fingerprint


def prepare_only(config_path: str) -> None:
    """Write the identity and bootstrap files, print the fingerprint, exit.

    For systemd's ``ExecStartPre=`` (deploy/certpost-agent.service), so that the daemons
    ordered after the agent find their files on a first boot, and for installation scripts.
    """
    *_, fingerprint = prepare(config_path)
    print(f"agent TLS fingerprint: {fingerprint}", flush=True)


def _protocol_with_head_deadline(header_timeout: float):
    """uvicorn's h11 protocol, plus a deadline for each request head.

    uvicorn times out idle kept-alive connections but not a client that sends its request head
    a byte at a time (each byte re-arms nothing, but nothing ever fires either). Here a timer
    armed when the connection opens, and again after each response, closes the connection
    unless a complete request head has arrived by then. Body time is the guard's (408).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadlineProtocol(H11Protocol):
        _head_timer = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout, self._head_expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a request head was parsed: a new request runs
                self._disarm()

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()
            if self.cycle is cycle and not self.transport.is_closing():
                self._arm()

    return HeadDeadlineProtocol


def serve(config: AgentConfig, key_path: str, cert_path: str) -> None:
    import uvicorn

    limits = config.limits
    uvicorn.run(
        create_agent_app(config, Agent(config)),
        host=config.listen_host,
        port=config.listen_port,
        ssl_keyfile=key_path,
        ssl_certfile=cert_path,
        http=_protocol_with_head_deadline(limits.header_timeout),
        timeout_keep_alive=limits.keepalive_timeout,
        limit_concurrency=limits.max_connections,
        log_level="warning",
        log_config=None,  # uvicorn's lines through the CLI's handler (JSON or text)
        access_log=False,  # app.kit.requestlog logs each request, with its id
        timeout_graceful_shutdown=1,
    )


def run_agent(config_path: str) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    agent, key_path, cert_path, fingerprint = prepare(config_path)
    print(f"agent TLS fingerprint: {fingerprint}", flush=True)
    serve(agent.config, key_path, cert_path)


if __name__ == "__main__":  # python -m app.agent.main CONFIG
    run_agent(sys.argv[1])
