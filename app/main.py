"""The API application: ``create_app()`` wires routers, problem handlers and the lifespan.

Nothing is built at import. The lifespan builds the ``AppContext`` (engine, keys, trust store)
unless the caller hands one in (tests do), brings stored certificate trust up to date with the
trust store, and starts the deployment worker when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from app.accounts.router import router as accounts_router
from app.acme.router import router as acme_router
from app.certificate_requests.router import router as certificate_requests_router
from app.certificates.router import router as certificates_router
from app.certificates.trust import refresh_stored as refresh_stored_trust
from app.conditional import ConditionalGet
from app.config import Settings, get_settings
from app.context import AppContext
from app.contract import TAGS
from app.deployments.router import router as deployments_router
from app.direct import shortcut
from app.domains.router import router as domains_router
from app.domains.tls_router import router as domain_tls_router
from app.enrolment.router import router as enrolment_router
from app.events.router import router as events_router
from app.inputs import refuse_control_characters, refuse_unknown_parameters
from app.kit.metricsendpoint import MetricsEndpoint, token_digest
from app.kit.requestlog import RequestLog
from app.limits import BodySizeLimit
from app.metrics.controller import ControllerMetrics
from app.outage import database_unavailable, install_outage_handlers
from app.problems import install_handlers, install_problem_pages
from app.servers.router import router as servers_router
from app.webhooks.router import router as webhooks_router

DESCRIPTION = """
certpost stores TLS certificates for hosted webmail and mail, binds them to domains and
servers, and deploys them to each mail server's agent.

Authenticate with `Authorization: Bearer <token>` (`certpost tokens create`). Admin tokens
manage everything; a customer token acts for its own account only.

Errors are RFC 9457 `application/problem+json` with a stable `code` to switch on; each
operation lists the codes it can answer per status, and each problem's `type`
(`/problems/<code>`) is a page describing its code. Private keys are write-only.
"""


def create_app(settings: Settings | None = None, context: AppContext | None = None,
               *, run_worker: bool | None = None) -> FastAPI:
    settings = settings or (context.settings if context else get_settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = context or AppContext.build(settings)
        app.state.ctx = ctx
        # Stored trust verdicts judged against other roots (the bundle changed since they were
        # written) are judged again before serving, so bindings' warnings and the TLS status
        # agree with the certificates' live ``trust`` (app/certificates/trust.py).
        await refresh_stored_trust(ctx.sessionmaker, ctx.trust)
        worker_task = None
        if run_worker if run_worker is not None else settings.run_worker:
            from app.scheduler.worker import run_forever

            worker_task = asyncio.create_task(run_forever(ctx), name="certpost-worker")
        try:
            yield
        finally:
            if worker_task is not None:
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            if context is None:
                await ctx.close()

    app = FastAPI(
        title="certpost",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        # No licence is granted (the repository has none); an SPDX LicenseRef says so without a URL.
        license_info={"name": "Proprietary, all rights reserved", "identifier": "LicenseRef-Proprietary"},
        servers=[{"url": "/", "description": "The API that serves this document"}],
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(refuse_control_characters), Depends(refuse_unknown_parameters)],
    )
    install_handlers(app)
    install_outage_handlers(app, asyncpg_errors=not settings.resolved_database_url.startswith("sqlite"))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ConditionalGet)
    _install_observability(app, settings)
    for router in (accounts_router, servers_router, deployments_router, domains_router, domain_tls_router, certificates_router,
                   certificate_requests_router, enrolment_router, acme_router, events_router, webhooks_router):
        app.include_router(router)
    _install_ops_routes(app)
    _install_docs(app)
    install_problem_pages(app)
    shortcut(app)  # last: it judges the routes declared before each hot one
    return app


def _install_observability(app: FastAPI, settings: Settings) -> None:
    """``/metrics`` behind its token (app/kit/metricsendpoint.py), then, outermost, the request
    id and access line of every request, which also feed the latency histogram
    (app/kit/requestlog.py). Added last, so they wrap the size limit: a 413 is logged too."""
    metrics = ControllerMetrics(settings.metrics_cache_seconds)
    app.state.metrics = metrics
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app.add_middleware(MetricsEndpoint, digest=token_digest(token) if token else None,
                       render=lambda: metrics.render(lambda: app.state.ctx.sessionmaker))
    app.add_middleware(RequestLog, observe=metrics.observe)


def _install_ops_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], include_in_schema=True, operation_id="getHealth",
             summary="Check that the process is up",
             responses={200: {"description": "The process is up",
                              "content": {"application/json": {"example": {"status": "ok"}}}}})
    async def healthz() -> dict:
        """Liveness: 200 `{"status": "ok"}` whenever the process answers at all; it reads nothing
        (use `/readyz` to learn whether the database answers)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], operation_id="getReadiness",
             summary="Check that the database answers",
             responses={200: {"description": "The database answers",
                              "content": {"application/json": {"example": {"status": "ok", "database": "ok"}}}},
                        503: {"description": "`database_unavailable`: The database is unavailable"}})
    async def readyz() -> JSONResponse:
        """Readiness: 200 when the database answers, else 503 `database_unavailable` with
        `Retry-After`, so a load balancer stops sending traffic during an outage and resumes after it."""
        try:
            async with app.state.ctx.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 (any failure to reach the database is the answer)
            return database_unavailable(app.state.outage_log, exc, database="unreachable")
        return JSONResponse({"status": "ok", "database": "ok"})


def _install_docs(app: FastAPI) -> None:
    """Swagger UI (/docs) and ReDoc (/redoc) served from the package's own copies, so both work
    with no internet access (no CDN, no Google fonts)."""
    static = resources.files("fastapi_offline") / "static"
    app.mount("/static/docs", StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="certpost API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
            # No badge that would call the public validator service.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title="certpost API",
            redoc_js_url="/static/docs/redoc.standalone.js",
            redoc_favicon_url="/static/docs/favicon.png",
            with_google_fonts=False,
        )
