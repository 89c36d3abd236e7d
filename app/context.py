"""What the running service holds for its lifetime, built by the lifespan or the CLI."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.accounts.token_cache import TokenCache
from app.certificates.reading import MaterialReader
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.deployments.agent_client import PinStore
from app.kit.crypto import MasterKey, MasterKeyError, load_master_key
from app.kit.signing import load_or_create_private_key
from app.kit.trust import TrustStore
from app.reads import Reads

BLOCKING_THREADS = 48  # the worker's ORDER_CONCURRENCY orders, and room for the rest


def _controller_key(settings: Settings) -> Ed25519PrivateKey:
    """The key that signs pushes: whoever reads it can reconfigure every mail server."""
    path = settings.resolved_controller_key_file
    key = load_or_create_private_key(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise MasterKeyError(
            f"controller key file {path} is accessible by group or others (mode {oct(mode)}); run: chmod 600 {path}"
        )
    return key


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    master_key: MasterKey
    trust: TrustStore
    controller_key: Ed25519PrivateKey
    _wake: asyncio.Event | None = field(default=None, repr=False)
    _blocking: ThreadPoolExecutor | None = field(default=None, repr=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    _reader: MaterialReader | None = field(default=None, repr=False)
    memo: dict = field(default_factory=dict, repr=False)
    _tokens: TokenCache | None = field(default=None, repr=False)
    """Small per-process facts worth not re-fetching (the ACME directory, app.acme.accounts)."""
    _reads: Reads | None = field(default=None, repr=False)
    _pins: PinStore | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        # The embedded default creates its own master key; an explicit file must already exist.
        master_key = load_master_key(
            settings.resolved_master_key_file, create=settings.master_key_file is None
        )
        engine = create_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            master_key=master_key,
            trust=TrustStore.load(settings.trust_bundle),
            controller_key=_controller_key(settings),
        )

    async def run_blocking(self, fn, *args, **kwargs):
        """Run blocking client code (certbot's ``acme``, dnspython) off the event loop.

        A pool of its own, sized for the worker's concurrency: asyncio's default pool has
        ``cores + 4`` threads, which would let only six orders talk to the CA at once here.
        """
        if self._blocking is None:
            self._blocking = ThreadPoolExecutor(max_workers=BLOCKING_THREADS, thread_name_prefix="certpost-io")
        return await asyncio.get_running_loop().run_in_executor(self._blocking, partial(fn, *args, **kwargs))

    def token_cache(self) -> TokenCache:
        """The authenticated tokens this process remembers (app.accounts.token_cache)."""
        if self._tokens is None:
            self._tokens = TokenCache(self.settings.token_cache_seconds)
        return self._tokens

    def reads(self) -> Reads:
        """Read-only statements of the hot read routes in one trip to the database (app/reads.py)."""
        if self._reads is None:
            self._reads = Reads(self.settings.resolved_database_url)
        return self._reads

    def agent_pins(self) -> PinStore:
        """The agents' pinned TLS contexts, fetched once per agent (app/deployments/agent_client.py)."""
        if self._pins is None:
            self._pins = PinStore()
        return self._pins

    def material_reader(self) -> MaterialReader:
        """Reads uploaded keys and PKCS#12 files in worker processes (certificates/reading.py)."""
        if self._reader is None:
            self._reader = MaterialReader(self.trust)
        return self._reader

    def lock(self, name: str) -> asyncio.Lock:
        """A process-wide lock by name (e.g. one ACME account registration at a time)."""
        return self._locks.setdefault(name, asyncio.Lock())

    def worker_wake(self) -> asyncio.Event:
        """Set after each committed request so an embedded worker delivers without waiting."""
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def notify_worker(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        if self._blocking is not None:
            self._blocking.shutdown(wait=False, cancel_futures=True)
        if self._reader is not None:
            self._reader.close()
        if self._reads is not None:
            await self._reads.close()
        await self.engine.dispose()
