"""The ``certpost`` command: serve, worker, agent, migrate, tokens, openapi, controller-key.

``python -m app.cli`` works the same. Settings come from CERTPOST_* environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from app.config import Settings, get_settings


def _migrate(settings: Settings) -> None:
    from app.db import secure_sqlite_files
    from app.migrate import upgrade

    secure_sqlite_files(settings.resolved_database_url)
    upgrade(settings.resolved_database_url)


async def _create_token(settings: Settings, role: str, account_id: str | None, description: str | None,
                        only_if_none: bool = False) -> str | None:
    from app.accounts.repository import AccountRepository
    from app.accounts.service import AccountService
    from app.db import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            service = AccountService(AccountRepository(session))
            if only_if_none and await service.has_tokens():
                return None
            _row, text = await service.create_token(role, account_id, description)
            await session.commit()
            return text
    finally:
        await engine.dispose()


def _migrate_apart() -> None:
    """``certpost migrate`` in a child process, with this process's environment (the settings
    come from it): Alembic and the revision modules, about 8 MB, then never load into the
    long-running server (docs/performance.md, "End to end through the API")."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "app.cli", "migrate"], stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        sys.exit(f"certpost serve: the migrations failed (exit {done.returncode}); see above")


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas, unless MALLOC_ARENA_MAX says otherwise.

    Every pooled SQLite connection runs in its own thread (aiosqlite), and glibc gives each
    thread its own arena (up to 8 per core), each keeping its freed memory: measured with 16
    concurrent reads of a 10,000-domain server, two arenas lowered the peak RSS of `certpost
    serve` by about 19 MB (docs/performance.md). Set before any thread exists; glibc only.
    """
    import ctypes
    import os

    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc (musl has no per-thread arenas)


def cmd_serve(args, settings: Settings) -> None:
    import uvicorn

    from app.context import AppContext
    from app.main import create_app

    _limit_malloc_arenas()
    _migrate_apart()
    ctx = AppContext.build(settings)  # refuses a master key readable by others, before serving
    token = asyncio.run(_create_token(settings, "admin", None, "first admin token", only_if_none=True))
    if token:
        print("certpost: created the first admin API token (shown only this once):", flush=True)
        print(f"  {token}", flush=True)
    app = create_app(settings, run_worker=False if args.no_worker else None)  # None: CERTPOST_RUN_WORKER
    del ctx
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False)


def cmd_worker(_args, settings: Settings) -> None:
    from app.context import AppContext
    from app.deployments.worker import run_forever

    _limit_malloc_arenas()
    _migrate(settings)

    async def main() -> None:
        ctx = AppContext.build(settings)
        try:
            await run_forever(ctx)
        finally:
            await ctx.close()

    asyncio.run(main())


def cmd_agent(args, _settings: Settings) -> None:
    from app.agent.apply import ApplyFailed
    from app.agent.config import ConfigError
    from app.agent.main import prepare_only, run_agent

    try:
        if args.prepare_only:
            prepare_only(args.config)
        else:
            run_agent(args.config)
    except (ConfigError, OSError, ApplyFailed) as exc:
        sys.exit(f"certpost agent: {exc}")


def cmd_migrate(_args, settings: Settings) -> None:
    _migrate(settings)
    print("certpost: database is at the latest revision")


def cmd_tokens(args, settings: Settings) -> None:
    if args.role == "customer" and not args.account:
        sys.exit("certpost: a customer token needs --account ID")
    if args.role == "admin" and args.account:
        sys.exit("certpost: an admin token has no account")
    from sqlalchemy.exc import DBAPIError

    from app.problems import AppError

    try:
        text = asyncio.run(_create_token(settings, args.role, args.account, args.description))
    except AppError as exc:  # unknown_account: one line, like the checks above
        sys.exit(f"certpost: {exc.detail}")
    except DBAPIError as exc:  # no tables yet (never migrated), or the database is away
        sys.exit(f"certpost: the database cannot store the token ({type(exc.orig).__name__}); "
                 "is it reachable and migrated (certpost migrate)?")
    print(text)


def openapi_document() -> dict:
    from app.main import create_app

    return create_app(Settings(run_worker=False)).openapi()


def cmd_openapi(_args, _settings: Settings) -> None:
    print(json.dumps(openapi_document(), indent=2, sort_keys=True))


def cmd_controller_key(_args, settings: Settings) -> None:
    from app.kit.signing import load_or_create_private_key, public_key_to_text

    key = load_or_create_private_key(settings.resolved_controller_key_file)
    print(public_key_to_text(key.public_key()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certpost", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (and the deployment worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="do not run the worker in this process")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="run the deployment worker alone").set_defaults(func=cmd_worker)
    agent = sub.add_parser("agent", help="run the agent on a mail server")
    agent.add_argument("--config", required=True, help="the agent's TOML config file")
    agent.add_argument(
        "--prepare-only",
        action="store_true",
        help="write the TLS identity and the daemons' bootstrap files, print the fingerprint, exit",
    )
    agent.set_defaults(func=cmd_agent)
    sub.add_parser("migrate", help="apply the database migrations").set_defaults(func=cmd_migrate)
    tokens = sub.add_parser("tokens", help="manage API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", choices=["admin", "customer"], required=True)
    create.add_argument("--account", help="the account id, for a customer token")
    create.add_argument("--description")
    create.set_defaults(func=cmd_tokens)
    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(func=cmd_openapi)
    sub.add_parser("controller-key", help="print the public key agents must trust").set_defaults(
        func=cmd_controller_key
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    from app.kit.crypto import MasterKeyError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    try:
        settings = get_settings()
    except ValidationError as exc:  # one line per wrong CERTPOST_* variable, no traceback
        sys.exit("\n".join(
            f"certpost: CERTPOST_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        ))
    try:
        args.func(args, settings)
    except MasterKeyError as exc:
        sys.exit(f"certpost: {exc}")


if __name__ == "__main__":
    main()
