"""deploy/prometheus/certpost-rules.yml and deploy/grafana/certpost-dashboard.json: they load,
their alerts fire when they should (promtool's own unit tests), and every metric they name is
one certpost exports, as a real scrape shows; the scrape itself passes `promtool check metrics`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from app.agent.metrics import AgentMetrics
from app.main import create_app
from tests.support.api import create_domain, create_server, upload

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "certpost-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "certpost-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "certpost-dashboard.json"
TOKEN = "monitoring-" + "t" * 30
NAME = re.compile(r"\bcertpost_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def promtool() -> str:
    """Debian's promtool, unpacked by scripts/install-test-deps.sh (or one on PATH)."""
    found = shutil.which("promtool") or "/opt/certpost-prometheus/usr/bin/promtool"
    assert Path(found).exists(), "promtool is missing: run scripts/install-test-deps.sh"
    return found


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], check=False, input=stdin, capture_output=True, text=True, timeout=120)


def test_the_rules_load():
    done = run("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_rule_is_refused(tmp_path):
    """The check above can fail: the same file with one expression broken does not load."""
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("certpost_server_held_back_names > 0", "certpost_server_held_back_names >", 1))
    done = run("check", "rules", str(broken))
    assert done.returncode != 0 and "CertpostNamesHeldBack" in done.stdout + done.stderr


def test_the_alerts_fire_when_they_should():
    done = run("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
async def scraped(context, admin, customer_headers, test_ca) -> str:
    """A real scrape of a controller holding a server, a customer's domain and a bound certificate."""
    settings = context.settings.model_copy(update={"metrics_token": SecretStr(TOKEN), "metrics_cache_seconds": 0})
    application = create_app(settings, context=context, run_worker=False)
    application.state.ctx = context
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://c.test") as client:
        server = await create_server(client, admin)
        account, customer = await customer_headers()
        await create_domain(client, admin, "a.test", server["id"], account)
        cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
        r = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"]}, headers=customer)
        assert r.status_code == 201, r.text
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        return response.text


async def test_a_real_scrape_passes_promtool_check_metrics(scraped):
    done = run("check", "metrics", stdin=scraped)
    assert done.returncode == 0, done.stdout + done.stderr
    agent = run("check", "metrics", stdin=agent_text())
    assert agent.returncode == 0, agent.stdout + agent.stderr


def agent_text() -> str:
    """An agent's metrics after one failed and one applied run (so every labelled family has series)."""
    metrics = AgentMetrics()
    metrics.record_run(0.5, {"stage": 0.1, "validate": 0.4}, {"step": "validate", "daemon": "nginx"})
    metrics.record_run(1.5, {"stage": 0.1, "validate": 0.4, "switch": 0.1, "reload": 0.4, "verify": 0.5}, None)
    metrics.record_drift_check(daemon="postfix", port=465, checked=24, drifted=0)
    return metrics.render().decode()


async def test_rules_and_dashboard_name_only_exported_metrics(scraped):
    exported = set(NAME.findall(scraped)) | set(NAME.findall(agent_text()))
    # Families with no series yet still print their HELP line, so the names are all there.
    exported |= {name.removesuffix(suffix) for name in exported for suffix in SUFFIXES if name.endswith(suffix)}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs and all(p.get("datasource", {}).get("uid") == "${datasource}" for p in dashboard["panels"]
                         if p["type"] != "row")
    named = set(NAME.findall(RULES.read_text())) | {n for e in exprs for n in NAME.findall(e)}
    assert named - exported == set()
