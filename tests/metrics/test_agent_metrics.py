"""The agent's /metrics behind its [metrics] token, its JSON log lines, and the controller's
record of the agent's last answer, with a real `certpost agent` process and the real worker."""

from __future__ import annotations

import ssl
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.agent.metrics import AgentMetrics
from app.kit.signing import public_key_to_text
from app.main import create_app
from tests.support.api import create_server
from tests.support.daemons import AgentProcess, bare_stack
from tests.support.logs import json_lines
from tests.support.worker import server_applied, work_until

AGENT_TOKEN = "agent-metrics-" + "a" * 30
CONTROLLER_TOKEN = "controller-metrics-" + "c" * 30


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture
def agent(tmp_path, context):
    stack = bare_stack(tmp_path / "agent", public_key_to_text(context.controller_key.public_key()))
    stack.agent_config.write_text(stack.agent_config.read_text() + f'\n[metrics]\ntoken = "{AGENT_TOKEN}"\n')
    process = AgentProcess(stack)
    fingerprint = process.start()
    yield stack, process, fingerprint
    process.stop()


@pytest.fixture
async def controller(context):
    settings = context.settings.model_copy(
        update={"metrics_token": SecretStr(CONTROLLER_TOKEN), "metrics_cache_seconds": 0})
    application = create_app(settings, context=context, run_worker=False)
    application.state.ctx = context
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://certpost.test") as c:
        yield c


async def test_a_delivery_shows_on_both_sides(agent, controller, admin, context):
    stack, process, fingerprint = agent
    server = await create_server(controller, admin, agent_url=stack.agent_url, agent_tls_fingerprint=fingerprint)
    before = time.time()
    await work_until(context, server_applied(controller, admin, server["id"]))

    scraped = await controller.get("/metrics", headers={"Authorization": f"Bearer {CONTROLLER_TOKEN}"})
    families = samples(scraped.text)
    contact = {l["server_id"]: v for l, v in families["certpost_agent_last_contact_timestamp_seconds"]}
    assert before - 1 <= contact[server["id"]] <= time.time() + 1
    assert {l["state"]: v for l, v in families["certpost_deployments"]}["applied"] == 1

    # The drift poll talks to the agent too: it records the contact, and the server's tag stays.
    from app.drift.poll import poll_server
    from app.drift.repository import DriftRepository
    from app.kit.time import utc_now
    from app.servers.models import Server

    tag = (await controller.get(f"/v1/servers/{server['id']}", headers=admin)).headers["etag"]
    async with context.sessionmaker() as session:
        delivered_contact = (await session.get(Server, server["id"])).agent_contact_at
    async with context.sessionmaker() as session:  # the worker's claim makes the poll's row
        assert await DriftRepository(session).claim(utc_now(), 60, 10) == [server["id"]]
        await session.commit()
    assert await poll_server(context, server["id"], "test-worker") is not None
    async with context.sessionmaker() as session:
        polled_contact = (await session.get(Server, server["id"])).agent_contact_at
    assert polled_contact > delivered_contact
    assert (await controller.get(f"/v1/servers/{server['id']}", headers=admin)).headers["etag"] == tag

    tls = ssl.create_default_context(cafile=str(stack.state_dir / "tls" / "agent.crt"))
    with httpx.Client(base_url=stack.agent_url, verify=tls, timeout=30) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer " + "b" * 40}).status_code == 401
        unsigned = http.get("/v1/state", headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
        assert unsigned.status_code == 401  # the metrics token opens /metrics, nothing else
        response = http.get("/metrics", headers={"Authorization": f"Bearer {AGENT_TOKEN}",
                                                 "X-Request-ID": "scrape-1"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "scrape-1"
    agent_families = samples(response.text)
    generation = (await controller.get(f"/v1/servers/{server['id']}", headers=admin)).json()["applied_generation"]
    assert agent_families["certpost_agent_applied_generation"] == [({}, generation)]
    runs = {l["outcome"]: v for l, v in agent_families["certpost_agent_apply_duration_seconds_count"]}
    assert runs.get("applied", 0) >= 1 and runs.get("failed", 0) == 0
    assert agent_families["certpost_agent_held_back_names"] == [({}, 0.0)]

    process.stop()  # flushes its log
    log = stack.root.joinpath("agent.log").read_text()
    lines = json_lines(log)
    access = [r for r in lines if r["logger"] == "certpost.agent.access"]
    config = [r for r in access if r.get("route") == "/v1/config"]
    assert config and config[0]["status"] == 200 and config[0]["method"] == "PUT"
    # The controller's delivery sent its own id: both sides' lines of one delivery share it.
    assert config[0]["request_id"].startswith(f"delivery-{server['id']}-")
    assert {"time", "level", "logger", "message", "request_id", "duration_ms"} <= config[0].keys()
    assert any(r.get("request_id") == "scrape-1" and r.get("route") == "/metrics" for r in access)
    # The pushed document carried the server certificate's private key; the scrape the token.
    assert "PRIVATE KEY" not in log and AGENT_TOKEN not in log and "BEGIN" not in log


def test_the_drift_setter_sets_the_drift_gauges():
    """``AgentMetrics.record_drift_check`` is what the periodic re-verification calls."""
    metrics = AgentMetrics()
    metrics.record_drift_check(daemon="postfix", port=465, checked=24, drifted=2, at=1_800_000_000)
    metrics.record_drift_check(daemon="nginx", port=443, checked=10, drifted=0, at=1_800_000_005)
    families = samples(metrics.render().decode())
    drift = {(l["daemon"], l["port"]): v for l, v in families["certpost_agent_drift_names"]}
    assert drift == {("postfix", "465"): 2, ("nginx", "443"): 0}
    checked = {(l["daemon"], l["port"]): v for l, v in families["certpost_agent_drift_checked_names"]}
    assert checked[("postfix", "465")] == 24
    assert families["certpost_agent_drift_last_check_timestamp_seconds"] == [({}, 1_800_000_005)]


def test_the_agent_metrics_token_is_checked_at_start(tmp_path):
    from app.agent.config import ConfigError, parse_config
    from app.kit.metricsendpoint import token_digest

    base = {"agent": {"state_dir": str(tmp_path), "controller_public_key": "ed25519:x"}}
    assert parse_config(base).metrics_token_digest is None
    assert parse_config({**base, "metrics": {"token": AGENT_TOKEN}}).metrics_token_digest == token_digest(AGENT_TOKEN)
    token_file = tmp_path / "metrics.token"
    token_file.write_text(AGENT_TOKEN + "\n")
    assert parse_config({**base, "metrics": {"token_file": str(token_file)}}).metrics_token_digest == \
        token_digest(AGENT_TOKEN)
    for bad, words in (({"token": "short"}, "at least 24"), ({"token": AGENT_TOKEN, "token_file": "x"}, "not both"),
                       ({"token_file": str(tmp_path / "missing")}, "token_file"), ({"tokn": AGENT_TOKEN}, "unknown")):
        with pytest.raises(ConfigError, match=words) as refused:
            parse_config({**base, "metrics": bad})
        assert AGENT_TOKEN not in str(refused.value)
    assert AGENT_TOKEN not in repr(parse_config({**base, "metrics": {"token": AGENT_TOKEN}}))
