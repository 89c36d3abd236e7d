"""The ``certpost`` command: serve, worker, agent, migrate, tokens, openapi, controller-key.

``python -m app.cli`` works the same. Settings come from CERTPOST_* environment variables.

A user's mistake (a wrong setting, an unknown account or token, an unreadable file, a database
that is away or not migrated) ends the command with one line on stderr and exit status 1
(``user_error``); a traceback means a bug in certpost, or was asked for with ``--debug`` or
CERTPOST_DEBUG=1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from contextlib import contextmanager

from app.config import Settings, get_settings
from app.kit.logs import FORMATS
from app.kit.logs import configure as configure_logging


class CommandError(Exception):
    """A refusal worded for the operator: printed as ``certpost: <message>``, exit status 1."""


def _database_place(settings: Settings) -> str:
    """Where the database is, in the words of the setting that chose it (no password shown)."""
    from sqlalchemy import make_url

    from app.db import sqlite_path

    if settings.database_url:
        return f"CERTPOST_DATABASE_URL={make_url(settings.database_url).render_as_string(hide_password=True)}"
    chosen = "CERTPOST_DATA_DIR" if "CERTPOST_DATA_DIR" in os.environ else "the default CERTPOST_DATA_DIR"
    return f"{sqlite_path(settings.resolved_database_url)} ({chosen}={settings.data_dir})"


@contextmanager
def _database(settings: Settings):
    """Turns "the database is away / not migrated" into one line that says which database."""
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except DBAPIError as exc:
        text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        cause = getattr(exc.orig, "__cause__", None)  # asyncpg's own error, under SQLAlchemy's adapter
        undefined_table = "42P01" in (getattr(exc.orig, "sqlstate", None), getattr(cause, "sqlstate", None))
        if "no such table" in text or undefined_table:
            raise CommandError(f"the database {_database_place(settings)} has no certpost tables; "
                               "run `certpost migrate` (or `certpost serve`, which migrates)") from exc
        raise CommandError(f"the database {_database_place(settings)} cannot be used: {text}") from exc
    except (TimeoutError, OSError) as exc:  # asyncpg: connection refused, name unknown, timeout
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "timed out"
        raise CommandError(f"cannot reach the database {_database_place(settings)}: {why}") from exc


def _require_existing_database(settings: Settings) -> None:
    """Commands that act on the server's data (tokens) never create a database: one created here
    would be empty, and a token stored in it would not work against the running server."""
    from app.db import sqlite_path

    path = sqlite_path(settings.resolved_database_url)
    if path is not None and not path.exists():
        raise CommandError(
            f"no certpost database at {_database_place(settings)}; set CERTPOST_DATA_DIR to the "
            "directory `certpost serve` uses, or run `certpost migrate` to create one there"
        )


def _migrate(settings: Settings) -> None:
    from app.db import secure_sqlite_files
    from app.migrate import upgrade

    try:
        secure_sqlite_files(settings.resolved_database_url)
    except OSError as exc:
        raise CommandError(f"cannot create the database {_database_place(settings)}: "
                           f"{exc.filename}: {exc.strerror}") from exc
    with _database(settings):
        upgrade(settings.resolved_database_url)


def _check_trust_bundle(settings: Settings) -> None:
    """CERTPOST_TRUST_BUNDLE read once here, so a wrong path or a file without PEM certificates
    is one line naming the variable instead of a traceback from the trust store."""
    from pathlib import Path

    from cryptography import x509

    if settings.trust_bundle is None:
        return
    try:
        data = Path(settings.trust_bundle).read_bytes()
    except OSError as exc:
        raise CommandError(f"CERTPOST_TRUST_BUNDLE: {settings.trust_bundle}: {exc.strerror}") from exc
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CommandError(f"CERTPOST_TRUST_BUNDLE: {settings.trust_bundle} holds no PEM certificate") from exc


async def _create_token(settings: Settings, role: str, account_id: str | None, description: str | None,
                        only_if_none: bool = False) -> str | None:

    async def create(service):
        if only_if_none and await service.has_tokens():
            return None
        from app.accounts.caller import OPERATOR

        _row, text = await service.create_token(role, account_id, description, caller=OPERATOR)
        return text

    return await _with_accounts(settings, create, commit=True)


async def _with_accounts(settings: Settings, work, *, commit: bool = False):
    """``work(AccountService)`` in one session; the same service the API's token routes use."""
    from app.accounts.repository import AccountRepository
    from app.accounts.service import AccountService
    from app.db import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            result = await work(AccountService(AccountRepository(session)))
            if commit:
                await session.commit()
            return result
    finally:
        await engine.dispose()


def _migrate_apart(debug: bool, log_format: str) -> None:
    """``certpost migrate`` in a child process, with this process's environment (the settings
    come from it): Alembic and the revision modules, about 8 MB, then never load into the
    long-running server (docs/performance.md, "End to end through the API"). The child says
    what went wrong itself (one line on stderr); this process only passes its exit status on."""
    import subprocess

    argv = [sys.executable, "-m", "app.cli", *(["--debug"] if debug else []), "migrate"]
    env = {**os.environ, "CERTPOST_LOG_FORMAT": log_format}  # its lines in the server's format
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=False)
    if done.returncode != 0:
        sys.exit(done.returncode)


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


def _freeze_startup_heap() -> None:
    """Leave what start-up built out of every later full garbage collection.

    A full (generation 2) collection walks every object the collector tracks; after start-up
    that is some 180,000 (the modules of FastAPI, SQLAlchemy, pydantic, cryptography and
    certpost's own), which took 90-150 ms per collection on the benchmark's machine, and every
    request in flight waited that long (docs/performance.md, "Full collections"). They live as
    long as the process, so they are collected once here and then frozen (``gc.freeze``,
    docs.python.org/3/library/gc.html#gc.freeze: moved to a permanent generation the collector
    no longer walks); what requests and the caches make later is collected as before."""
    import gc

    gc.collect()
    gc.freeze()


def cmd_serve(args, settings: Settings) -> None:
    import uvicorn

    from app.context import AppContext
    from app.main import create_app

    _limit_malloc_arenas()
    _check_trust_bundle(settings)
    tls = _tls(settings)  # a wrong TLS setting fails before anything else runs
    _migrate_apart(args.debug, args.log_format)
    ctx = AppContext.build(settings)  # refuses a master key readable by others, before serving
    with _database(settings):
        token = asyncio.run(_create_token(settings, "admin", None, "first admin token", only_if_none=True))
    if token:
        print("certpost: created the first admin API token (shown only this once):", flush=True)
        print(f"  {token}", flush=True)
    app = create_app(settings, run_worker=False if args.no_worker else None)  # None: CERTPOST_RUN_WORKER
    del ctx
    host = settings.host if args.host is None else args.host
    port = settings.port if args.port is None else args.port
    _freeze_startup_heap()
    # log_config=None: uvicorn's own lines go through the handler main() installed (JSON or
    # text); its access log is off, app.kit.requestlog writes one line per request instead.
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, log_config=None,
                access_log=False, **tls)


def _tls(settings: Settings) -> dict:
    """uvicorn's TLS arguments from CERTPOST_TLS_CERT_FILE / CERTPOST_TLS_KEY_FILE (both or neither)."""
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise CommandError("set both CERTPOST_TLS_CERT_FILE and CERTPOST_TLS_KEY_FILE, or neither")
    if settings.tls_cert_file is None:
        return {}
    for path in (settings.tls_cert_file, settings.tls_key_file):
        if not path.is_file():
            raise CommandError(f"{path}: no such file (CERTPOST_TLS_CERT_FILE / CERTPOST_TLS_KEY_FILE)")
    import ssl

    from app.enrolment.service import controller_tls_fingerprint
    from app.kit.x509 import MaterialError

    # Load the pair as uvicorn will, so a certificate that is not PEM or a key that is not its
    # key is one line here, before migrating or making the first admin token.
    where = f"CERTPOST_TLS_CERT_FILE {settings.tls_cert_file} / CERTPOST_TLS_KEY_FILE {settings.tls_key_file}"
    try:
        fingerprint = controller_tls_fingerprint(settings)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except MaterialError as exc:
        raise CommandError(f"{settings.tls_cert_file}: {exc} (CERTPOST_TLS_CERT_FILE)") from None
    except ssl.SSLError as exc:
        reason = ("the key is not the certificate's key" if "KEY_VALUES_MISMATCH" in str(exc)
                  else "these are not a PEM certificate and its PEM private key")
        raise CommandError(f"{where}: {reason}") from None
    except OSError as exc:
        raise CommandError(f"{where}: {exc.strerror or exc}") from None
    print(f"certpost: serving HTTPS; certificate SHA-256 {fingerprint}", flush=True)
    return {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}


def cmd_worker(_args, settings: Settings) -> None:
    from app.context import AppContext
    from app.scheduler.worker import run_forever

    _limit_malloc_arenas()
    _check_trust_bundle(settings)
    _migrate(settings)

    async def main() -> None:
        ctx = AppContext.build(settings)
        try:
            await run_forever(ctx)
        finally:
            await ctx.close()

    asyncio.run(main())


def cmd_agent_enroll(args) -> None:
    """``certpost agent enroll``: see app/agent/enrol.py for the order of its steps."""
    from pathlib import Path

    from app.agent.enrol import EnrolError, enrol

    # httpx logs each request at INFO: for this one-shot command that is a second line beside
    # the one that says what happened.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        done = enrol(args.controller, args.token, config_path=Path(args.enroll_config), pin=args.pin,
                     ca_bundle=Path(args.ca_bundle) if args.ca_bundle else None, agent_url=args.agent_url,
                     listen=args.listen, hostname=args.hostname, insecure_http=args.insecure_http)
    except (EnrolError, OSError) as exc:
        sys.exit(f"certpost agent enroll: {exc}")
    print(f"certpost: enrolled as the agent of server {done.server_name} ({done.server_id})")
    print(f"  agent URL {done.agent_url}, TLS fingerprint {done.fingerprint}")
    print(f"  configuration written to {done.config_path}; start the agent: certpost agent --config {done.config_path}")


def cmd_agent(args, _settings: Settings) -> None:
    from app.agent.apply import ApplyFailed

    if getattr(args, "agent_command", None) == "enroll":
        cmd_agent_enroll(args)
        return
    if not args.config:
        raise CommandError("certpost agent needs --config FILE (or: certpost agent enroll ...)")
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
        raise CommandError("a customer token needs --account ID")
    if args.role == "admin" and args.account:
        raise CommandError("an admin token has no account")
    _require_existing_database(settings)
    with _database(settings):
        text = asyncio.run(_create_token(settings, args.role, args.account, args.description))
    print(text)


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"


def cmd_tokens_list(args, settings: Settings) -> None:
    """One token per line, oldest first, revoked ones included (REVOKED says when); never a secret."""
    _require_existing_database(settings)

    async def listing(service):
        if args.account:
            await service.require_account(args.account)
        return await service.all_tokens(args.account)

    with _database(settings):
        rows = asyncio.run(_with_accounts(settings, listing))
    table = [("ID", "ROLE", "ACCOUNT", "CREATED", "REVOKED", "DESCRIPTION")]
    table += [(row.id, row.role, row.account_id or "-", _when(row.created_at), _when(row.revoked_at),
               row.description or "") for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)), line[-1], sep="  ")


def cmd_tokens_revoke(args, settings: Settings) -> None:
    """Takes a token's id, or the whole token text (``cpt_<id>_<secret>``) as it was handed out."""
    from app.accounts.caller import OPERATOR
    from app.accounts.tokens import parse_token
    from app.problems import NotFound

    parsed = parse_token(args.token)
    token_id = parsed[0] if parsed else args.token
    _require_existing_database(settings)
    try:
        with _database(settings):
            asyncio.run(_with_accounts(settings, lambda service: service.revoke_token(token_id, caller=OPERATOR),
                                     commit=True))
    except NotFound as exc:
        raise CommandError(
            f"no token {token_id} (or it is already revoked); `certpost tokens list` shows them") from exc
    print(f"certpost: token {token_id} revoked")


def openapi_document() -> dict:
    from app.main import create_app

    return create_app(Settings(run_worker=False)).openapi()


def cmd_openapi(_args, _settings: Settings) -> None:
    print(json.dumps(openapi_document(), indent=2, sort_keys=True))


def cmd_controller_key(_args, settings: Settings) -> None:
    from app.kit.signing import load_or_create_private_key, public_key_to_text

    key = load_or_create_private_key(settings.resolved_controller_key_file)
    print(public_key_to_text(key.public_key()))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("certpost")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


DAEMONS = ("serve", "worker", "agent")


def _add_log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=FORMATS,
                        help="log lines on stderr: json (one object per line, the default) or text "
                             "(default: CERTPOST_LOG_FORMAT, else json)")


def log_format(args) -> str:
    """``--log-format``, else CERTPOST_LOG_FORMAT, else JSON for the long-running commands (a
    collector reads them) and text for the ones a person types (migrate, tokens, …)."""
    chosen = getattr(args, "log_format", None) or os.environ.get("CERTPOST_LOG_FORMAT", "").strip().lower()
    if chosen in FORMATS:
        return chosen
    return "json" if args.command in DAEMONS else "text"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certpost", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"certpost {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of any error (also CERTPOST_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (and the deployment worker)")
    serve.add_argument("--host", help="address to listen on (default: CERTPOST_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: CERTPOST_PORT, else 8000)")
    serve.add_argument("--no-worker", action="store_true", help="do not run the worker in this process")
    _add_log_format(serve)
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run the deployment worker alone")
    _add_log_format(worker)
    worker.set_defaults(func=cmd_worker)
    agent = sub.add_parser("agent", help="run the agent on a mail server")
    _add_log_format(agent)
    agent.add_argument("--config", help="the agent's TOML config file")
    agent.add_argument(
        "--prepare-only",
        action="store_true",
        help="write the TLS identity and the daemons' bootstrap files, print the fingerprint, exit",
    )
    agent.set_defaults(func=cmd_agent)
    agent_sub = agent.add_subparsers(dest="agent_command", required=False)
    enroll = agent_sub.add_parser(
        "enroll", help="register this agent with the controller using a one-time enrolment token")
    enroll.add_argument("--controller", required=True, help="the controller's URL, e.g. https://certpost.example:8443")
    enroll.add_argument("--token", required=True, help="the enrolment token (cpe_...) an administrator made")
    trust = enroll.add_mutually_exclusive_group()
    trust.add_argument("--pin", help="sha256:<hex> of the controller's TLS certificate (printed with the token)")
    trust.add_argument("--ca-bundle", help="PEM roots to verify the controller's certificate against")
    enroll.add_argument("--config", dest="enroll_config", default="/etc/certpost/agent.toml",
                        help="the agent's TOML config file, created or updated (default /etc/certpost/agent.toml)")
    enroll.add_argument("--listen", help="HOST:PORT the agent listens on (written to [listen]; default 0.0.0.0:8750 "
                        "when the file sets no port)")
    enroll.add_argument("--agent-url", help="https:// URL where the controller reaches this agent "
                        "(default https://<hostname>:<port>)")
    enroll.add_argument("--hostname", help="this server's host name, when the config sets none "
                        "(default: the host name registered at the controller)")
    enroll.add_argument("--insecure-http", action="store_true",
                        help="allow an http:// controller URL (token and key unprotected: trusted networks only)")
    sub.add_parser("migrate", help="apply the database migrations").set_defaults(func=cmd_migrate)
    tokens = sub.add_parser("tokens", help="manage API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", choices=["admin", "customer"], required=True)
    create.add_argument("--account", help="the account id, for a customer token")
    create.add_argument("--description")
    create.set_defaults(func=cmd_tokens)
    listing = tokens_sub.add_parser("list", help="list the tokens (never their secrets)")
    listing.add_argument("--account", help="only this account's tokens")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = tokens_sub.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("token", help="the token's id (from `tokens list`), or the token itself")
    revoke.set_defaults(func=cmd_tokens_revoke)
    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(func=cmd_openapi)
    sub.add_parser("controller-key", help="print the public key agents must trust").set_defaults(
        func=cmd_controller_key
    )
    return parser


def user_error(exc: BaseException) -> str | None:
    """The one line (without ``certpost: ``) for an error the operator can fix; None for a bug."""
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from app.kit.crypto import MasterKeyError
    from app.problems import AppError

    if isinstance(exc, CommandError | MasterKeyError):
        return str(exc)
    if isinstance(exc, ValidationError):  # one line per wrong CERTPOST_* variable
        return "\ncertpost: ".join(
            f"CERTPOST_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
    if isinstance(exc, AppError):  # a service's refusal: unknown_account, ...
        return exc.detail
    if isinstance(exc, ArgumentError | NoSuchModuleError):  # the URL SQLAlchemy cannot use
        return f"CERTPOST_DATABASE_URL: {exc}"
    if type(exc).__module__.startswith("alembic.") and type(exc).__name__ == "CommandError":
        # e.g. a database migrated by a newer certpost: "Can't locate revision identified by ..."
        return f"the migrations cannot run: {exc}"
    if isinstance(exc, OSError) and exc.strerror:  # a file or directory that cannot be read or made
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.debug = args.debug or _env_flag("CERTPOST_DEBUG")
    args.log_format = log_format(args)
    configure_logging(args.log_format)
    try:
        args.func(args, get_settings())
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `certpost openapi | head` closed the pipe early: what the reader wanted it has; say
        # nothing, and keep the interpreter's final flush from raising again (Python's signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except Exception as exc:
        line = None if args.debug else user_error(exc)
        if line is None:
            raise
        sys.exit(f"certpost: {line}")


if __name__ == "__main__":
    main()
