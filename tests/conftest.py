"""Test set-up: one fresh database per run (SQLite file or a new PostgreSQL database), built by
the real Alembic migrations; each test starts from empty tables.

Choose the backend with CERTPOST_TEST_DB=sqlite (default) or CERTPOST_TEST_DB=postgres;
CERTPOST_TEST_PG_URL overrides the PostgreSQL server (default the local one, database `test`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.context import AppContext
from app.main import create_app
from app.migrate import upgrade
from app.models import Base
from tests.support.pki import CA, write_pem
from tests.support.threads import in_thread

pytest_plugins = ["tests.support.acme_fixtures"]

PG_ADMIN_URL = os.environ.get("CERTPOST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")




async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def backend() -> str:
    return os.environ.get("CERTPOST_TEST_DB", "sqlite")


@contextlib.contextmanager
def own_database(backend: str, directory, prefix: str):
    """The URL of a new, empty database on the backend under test (no migration run), dropped
    afterwards: a file in ``directory`` on SQLite, a database of its own on PostgreSQL."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'certpost.db'}"
        return
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    in_thread(asyncio.run, _pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        in_thread(asyncio.run, _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(backend, tmp_path_factory) -> str:
    with own_database(backend, tmp_path_factory.mktemp("db"), "certpost_test") as url:
        in_thread(upgrade, url)
        yield url


@pytest.fixture
def empty_database(backend, tmp_path) -> str:
    """A database of its own with no migration run yet, for tests that migrate step by step."""
    with own_database(backend, tmp_path, "certpost_migrate") as url:
        yield url


@pytest.fixture(scope="session")
def test_ca() -> CA:
    """The CA the service trusts (through CERTPOST_TRUST_BUNDLE)."""
    return CA.create("certpost Test Root CA")


@pytest.fixture(scope="session")
def test_intermediate(test_ca) -> CA:
    return test_ca.intermediate("certpost Test Issuing CA")


@pytest.fixture(scope="session")
def untrusted_ca() -> CA:
    return CA.create("Untrusted Root CA")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(database_url, data_dir, test_ca) -> Settings:
    bundle = write_pem(data_dir / "trust.pem", test_ca.cert_pem)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        trust_bundle=bundle,
        run_worker=False,
        # Off unless a test turns it on (tests/e2e/test_drift.py): worker rounds would otherwise
        # start drift polls beside the deliveries that tests count and pause.
        drift_poll_seconds=0,
        # Off too unless a test runs it (tests/retention): a round would prune beside what tests count.
        retention_check_seconds=0,
    )


@pytest.fixture(scope="session")
async def context(settings) -> AsyncIterator[AppContext]:
    ctx = AppContext.build(settings)
    yield ctx
    await ctx.close()


@pytest.fixture(autouse=True)
async def clean_tables(request):
    """Every test starts with empty tables (the schema stays, as the migrations built it)."""
    yield
    if "context" not in request.fixturenames:
        return
    ctx: AppContext = request.getfixturevalue("context")
    async with ctx.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(text(f"DELETE FROM {table.name}"))
    ctx.token_cache().clear()  # the tokens it remembers are gone with their rows


@pytest.fixture
async def app(context):
    application = create_app(context=context, run_worker=False)
    application.state.ctx = context
    return application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://certpost.test") as c:
        yield c


async def _token(context: AppContext, role: str, account_id: str | None) -> str:
    from app.accounts.repository import AccountRepository
    from app.accounts.service import AccountService

    async with context.sessionmaker() as session:
        from app.accounts.caller import OPERATOR

        _row, token = await AccountService(AccountRepository(session)).create_token(role, account_id, caller=OPERATOR)
        await session.commit()
    return token


@pytest.fixture
async def admin(context) -> dict[str, str]:
    """Headers of an admin token."""
    return {"Authorization": f"Bearer {await _token(context, 'admin', None)}"}


@pytest.fixture
def customer_headers(context, client, admin):
    """A factory: create an account and return (account_id, headers of its customer token)."""

    async def make(name: str | None = None) -> tuple[str, dict[str, str]]:
        response = await client.post("/v1/accounts", json={"name": name or f"acct-{uuid.uuid4().hex[:8]}"}, headers=admin)
        assert response.status_code == 201, response.text
        account_id = response.json()["id"]
        return account_id, {"Authorization": f"Bearer {await _token(context, 'customer', account_id)}"}

    return make
