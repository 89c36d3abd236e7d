"""The agent's fixtures live in tests/agent/fixtures.py so other test packages can load them as a
plugin; see that module's docstring."""

from tests.agent.fixtures import (  # noqa: F401
    SignedAgentClient,
    agent_client,
    controller_key,
    mail_stack,
    test_ca,
)
