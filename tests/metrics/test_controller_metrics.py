"""The controller's GET /metrics: protected by its own token, figures that match the database,
request latency by route template, and nothing a customer could read (docs/operations.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.main import create_app
from tests.support.api import create_domain, create_server, upload

TOKEN = "metrics-" + "k" * 32


@pytest.fixture
async def metrics_client(context):
    """A client of an app whose settings carry a metrics token (and no figure cache)."""
    settings = context.settings.model_copy(update={"metrics_token": SecretStr(TOKEN), "metrics_cache_seconds": 0})
    application = create_app(settings, context=context, run_worker=False)
    application.state.ctx = context
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://certpost.test") as c:
        yield c


def parse(text: str) -> dict[str, list]:
    """{family name: [(labels, value), ...]} with prometheus_client's own text parser."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


async def scrape(client) -> tuple[str, dict]:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text, parse(response.text)


async def test_metrics_need_their_own_token(client, metrics_client, admin, customer_headers):
    # No token configured: there is no /metrics at all.
    assert (await client.get("/metrics")).status_code == 404
    _, customer = await customer_headers()
    for headers in ({}, {"Authorization": "Bearer " + "x" * 40}, admin, customer,
                    {"Authorization": f"Basic {TOKEN}"}):
        refused = await metrics_client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "certpost_" not in refused.text
    assert (await metrics_client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 405
    _, families = await scrape(metrics_client)
    assert families["certpost_metrics_database_up"] == [({}, 1.0)]


async def test_gzip_when_the_scraper_accepts_it(metrics_client):
    response = await metrics_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}",
                                                             "Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
    assert "certpost_deployments" in response.text  # httpx decoded it


async def test_figures_match_what_was_stored(metrics_client, admin, customer_headers, test_ca):
    server = await create_server(metrics_client, admin)
    a_id, a = await customer_headers()
    b_id, b = await customer_headers()
    await create_domain(metrics_client, admin, "a.test", server["id"], a_id)
    await create_domain(metrics_client, admin, "b.test", server["id"], b_id)
    await create_domain(metrics_client, admin, "c.test", server["id"], b_id)
    soon = datetime.now(UTC) + timedelta(days=10)
    bound_a = await upload(metrics_client, a, test_ca.issue(["a.test", "*.a.test"], not_after=soon))
    bound_b = await upload(metrics_client, b, test_ca.issue(["*.b.test"]))
    unused = await upload(metrics_client, b, test_ca.issue(["unused.b.test"]))
    for domain, cert, headers in (("a.test", bound_a, a), ("b.test", bound_b, b)):
        for service in ("webmail", "mail"):
            r = await metrics_client.put(f"/v1/domains/{domain}/bindings/{service}",
                                         json={"certificate_id": cert["id"]}, headers=headers)
            assert r.status_code == 201, r.text

    text, families = await scrape(metrics_client)
    expiry = {labels["certificate_id"]: (labels, value)
              for labels, value in families["certpost_certificate_not_after_timestamp_seconds"]}
    assert unused["id"] not in expiry  # nothing presents it: no series
    labels, value = expiry[bound_a["id"]]
    assert labels == {"certificate_id": bound_a["id"], "account_id": a_id, "name": "a.test", "source": "upload"}
    assert value == datetime.fromisoformat(bound_a["not_after"]).timestamp()
    assert expiry[bound_b["id"]][0]["account_id"] == b_id
    server_wide = [v for v in expiry.values() if v[0]["account_id"] == ""]  # the server's self-signed default
    assert len(server_wide) == 1 and server_wide[0][0]["source"] == "self-signed"

    # c.test is on the server's self-signed default, which covers neither of its names.
    warnings = {(l["service"], l["reason"]): v for l, v in families["certpost_client_warnings"]}
    names = {l["service"]: v for l, v in families["certpost_domain_service_names"]}
    warned = {l["service"]: v for l, v in families["certpost_client_warning_names"]}
    assert names == {"webmail": 3, "mail": 3} and warned == {"webmail": 1, "mail": 1}
    for service in ("webmail", "mail"):
        assert warnings[(service, "self_signed")] == 1
        assert warnings[(service, "hostname_not_covered")] == 1
        assert warnings[(service, "certificate_expired")] == 0

    # The server has no agent: its deployment waits, and no contact series is exported.
    deployments = {l["state"]: v for l, v in families["certpost_deployments"]}
    assert deployments["pending"] == 1 and sum(deployments.values()) == 1
    state = {l["state"]: v for l, v in families["certpost_server_deployment_state"]
             if l["server_id"] == server["id"]}
    assert state["pending"] == 1 and state["failed"] == 0
    assert "certpost_agent_last_contact_timestamp_seconds" not in families
    assert families["certpost_server_generation_lag"][0][1] >= 1
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text


async def test_latency_is_by_route_template_never_the_raw_path(metrics_client, admin, customer_headers):
    server = await create_server(metrics_client, admin)
    account, _ = await customer_headers()
    await create_domain(metrics_client, admin, "secret-customer.test", server["id"], account)
    assert (await metrics_client.get("/v1/domains/secret-customer.test", headers=admin)).status_code == 200
    assert (await metrics_client.get("/no/such/path-of-a-customer.test")).status_code == 404
    text, families = await scrape(metrics_client)
    counts = {(l["method"], l["route"], l["status"]): v
              for l, v in families["certpost_http_request_duration_seconds_count"]}
    assert counts[("GET", "/v1/domains/{name}", "200")] == 1
    assert counts[("GET", "unmatched", "404")] == 1
    assert "secret-customer" not in text and "path-of-a-customer" not in text


async def test_request_id_is_echoed_kept_when_safe_and_replaced_otherwise(client):
    kept = await client.get("/healthz", headers={"X-Request-ID": "panel-42:abc.DEF_9"})
    assert kept.headers["x-request-id"] == "panel-42:abc.DEF_9"
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    for hostile in ("a" * 129, 'x"}{"level":"error', "-starts-with-dash", "two words", "é"):
        replaced = await client.get("/healthz", headers={"X-Request-ID": hostile.encode("utf-8")})
        assert replaced.headers["x-request-id"] != hostile and len(replaced.headers["x-request-id"]) == 32


async def test_a_database_outage_serves_the_last_figures_and_says_so(context, tmp_path):
    from app.config import Settings
    from app.db import create_engine, create_sessionmaker
    from app.metrics.controller import ControllerMetrics
    from tests.support.ports import free_port

    metrics = ControllerMetrics(cache_seconds=0)
    fresh = parse((await metrics.render(lambda: context.sessionmaker)).decode())
    assert fresh["certpost_metrics_database_up"] == [({}, 1.0)]
    closed = free_port()  # nothing listens there: connection refused, as when the database is down
    away = create_engine(Settings(database_url=f"postgresql+asyncpg://certpost@127.0.0.1:{closed}/gone",
                                  data_dir=tmp_path))
    try:
        stale = parse((await metrics.render(lambda: create_sessionmaker(away))).decode())
    finally:
        await away.dispose()
    assert stale["certpost_metrics_database_up"] == [({}, 0.0)]
    assert stale["certpost_metrics_snapshot_timestamp_seconds"] == fresh["certpost_metrics_snapshot_timestamp_seconds"]
    assert "certpost_deployments" in stale


async def test_order_and_renewal_outcomes(metrics_client, context, admin, customer_headers, test_ca):
    """Orders by purpose and status, ACME certificates by renewal status, and the attempts of
    each failing renewal, as the worker leaves them in the database."""
    from sqlalchemy import update

    from app.acme.models import CertificateOrder
    from app.certificates.models import Certificate

    account, customer = await customer_headers()
    failing = await upload(metrics_client, customer, test_ca.issue(["shop.test"]))
    renewed = await upload(metrics_client, customer, test_ca.issue(["blog.test"]))
    async with context.sessionmaker() as session:
        await session.execute(update(Certificate).where(Certificate.id == failing["id"]).values(
            source="acme", renewal_status="failed", renewal_attempts=3))
        await session.execute(update(Certificate).where(Certificate.id == renewed["id"]).values(
            source="acme", renewal_status="scheduled"))
        for purpose, status in (("new", "valid"), ("renewal", "valid"), ("renewal", "invalid"), ("renewal", "invalid")):
            session.add(CertificateOrder(account_id=account, names=["shop.test"], challenge="dns-01", key_type="ec-p256",
                                         purpose=purpose, status=status))
        await session.commit()
    _, families = await scrape(metrics_client)
    orders = {(l["purpose"], l["status"]): v for l, v in families["certpost_acme_orders"]}
    assert orders == {("new", "valid"): 1, ("renewal", "valid"): 1, ("renewal", "invalid"): 2}
    renewals = {l["status"]: v for l, v in families["certpost_certificate_renewals"]}
    assert renewals["failed"] == 1 and renewals["scheduled"] == 1 and renewals["renewing"] == 0
    assert families["certpost_certificate_renewal_failed_attempts"] == [
        ({"certificate_id": failing["id"], "account_id": account, "name": "shop.test"}, 3.0)]
