"""The agent's HTTPS API (and ``GET /metrics`` behind its own token, app/agent/metrics.py): ``GET /v1/state``, ``GET /v1/observations`` (drift), ``PUT /v1/bundles``, ``PUT /v1/config`` and ``PUT``/``DELETE
/v1/acme-challenges/{token}`` (HTTP-01 answers), all signed by the controller.

Every request must carry a valid Ed25519 signature from the controller key (``app.kit.signing``,
a profile of RFC 9421) with a nonce not seen before; otherwise 401 problem+json (RFC 9457). The
signature, the body size and the body's arrival time are checked by :mod:`app.agent.guard`
before any handler runs, and before the body is read at all when they fail.
Nothing is built at import: :func:`create_agent_app` builds the app for one configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.agent.challenges import ChallengeIn
from app.agent.config import AgentConfig
from app.agent.desired import BundleUpload, Desired, DesiredDelta
from app.agent.guard import RequestGuard
from app.agent.problems import PROBLEM_JSON, AgentProblem
from app.agent.service import Agent
from app.agent.state import NonceLedger
from app.kit.metricsendpoint import MetricsEndpoint
from app.kit.requestlog import RequestLog
from app.kit.signing import public_key_from_text

log = logging.getLogger("certpost.agent")


def problem_response(exc: AgentProblem) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, media_type=PROBLEM_JSON)


def _parse_body(model, body: bytes, what: str):
    """The JSON body as ``model``, or 400 ``invalid_request`` (field errors, never the values).

    ``model`` may be a function of the parsed JSON that picks the model (full or delta document).
    """
    try:
        data = json.loads(body)
        if not isinstance(model, type):
            model = model(data)
        return model.model_validate(data)
    except (ValueError, ValidationError) as exc:
        errors = _validation_errors(exc) if isinstance(exc, ValidationError) else []
        raise AgentProblem(
            400, "invalid_request", "Invalid request", f"the body is not {what}", errors=errors
        ) from None


def _document_model(data):
    """A document with ``base_digest`` is a delta (docs/agent.md, ``PUT /v1/config``)."""
    return DesiredDelta if isinstance(data, dict) and "base_digest" in data else Desired


def _validation_errors(exc: ValidationError) -> list[dict]:
    """Pydantic errors without the offending input: it may be a private key."""
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


_EPOCH = re.compile(r"[0-9a-f]{1,32}")
MAX_OBSERVATIONS_PAGE = 5000


def _observation_query(request: Request) -> tuple[str | None, int, int]:
    """``epoch``, ``after`` and ``limit`` of ``GET /v1/observations``, or 400."""
    query = request.query_params
    unknown = set(query) - {"epoch", "after", "limit"}
    epoch = query.get("epoch")
    try:
        after = int(query.get("after", "0"))
        limit = int(query.get("limit", "1000"))
    except ValueError:
        after = limit = -1
    if unknown or after < 0 or not 1 <= limit <= MAX_OBSERVATIONS_PAGE or (
        epoch is not None and not _EPOCH.fullmatch(epoch)
    ):
        raise AgentProblem(
            400, "invalid_request", "Invalid request",
            f"epoch is hex, after a whole number >= 0, limit 1 to {MAX_OBSERVATIONS_PAGE}; nothing else",
            errors=[],
        )
    return epoch, after, limit


@contextlib.asynccontextmanager
async def _drift_rounds(app: FastAPI):
    """The drift schedule (app.agent.drift) runs while the server does."""
    agent = app.state.agent
    task = None
    if agent.config.drift_interval > 0:
        task = asyncio.create_task(agent.drift.run_forever(), name="drift")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def create_agent_app(config: AgentConfig, agent: Agent | None = None) -> FastAPI:
    agent = agent or Agent(config)
    app = FastAPI(title="certpost agent", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=_drift_rounds)
    app.state.agent = agent
    router = APIRouter(prefix="/v1")

    @router.get("/state")
    async def get_state() -> JSONResponse:
        # Straight to JSON: no response-model pass over the (10,000-entry) fingerprint list.
        return JSONResponse(agent.state())

    @router.get("/observations")
    async def get_observations(request: Request) -> JSONResponse:
        epoch, after, limit = _observation_query(request)
        return JSONResponse(agent.observations(epoch, after, limit))

    @router.put("/bundles")
    async def put_bundles(request: Request) -> JSONResponse:
        upload = _parse_body(BundleUpload, await request.body(), "a valid bundle upload")
        return JSONResponse(await agent.put_bundles(upload))

    @router.put("/config")
    async def put_config(request: Request) -> JSONResponse:
        body = await request.body()
        # The moment the controller's push arrived (signed, digest checked); bench/e2e.py reads it.
        log.info("PUT /v1/config: %d bytes received", len(body))
        desired = _parse_body(_document_model, body, "a valid configuration document")
        status, body = await agent.put_config(desired)
        return JSONResponse(body, status_code=status)

    @router.put("/acme-challenges/{token}")
    async def put_challenge(token: str, request: Request) -> dict:
        agent.challenge_store(token)  # 400 invalid_token before looking at the body
        challenge = _parse_body(ChallengeIn, await request.body(), "a valid HTTP-01 answer")
        return agent.put_challenge(token, challenge)

    @router.delete("/acme-challenges/{token}")
    async def delete_challenge(token: str) -> dict:
        return agent.delete_challenge(token)

    app.include_router(router)
    app.add_middleware(
        RequestGuard,
        public_key=public_key_from_text(config.controller_public_key),
        ledger=NonceLedger.open(config.state_dir / "nonces.json", 2 * config.max_skew),
        max_skew=config.max_skew,
        limits=config.limits,
    )

    async def render_metrics() -> bytes:
        return agent.metrics.render()

    # Outside the gate: Prometheus cannot sign requests. /metrics has its own token (no token
    # configured: the path goes on to the gate like any other, which refuses it unsigned).
    app.add_middleware(MetricsEndpoint, digest=config.metrics_token_digest, render=render_metrics)
    app.add_middleware(RequestLog, logger="certpost.agent.access")  # outermost: every answer

    @app.exception_handler(AgentProblem)
    async def _problem(_request: Request, exc: AgentProblem) -> JSONResponse:
        return problem_response(exc)

    return app
