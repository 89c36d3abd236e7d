"""What the running service holds for its lifetime, built by the lifespan or the CLI."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.kit.crypto import MasterKey, load_master_key
from app.kit.signing import load_or_create_private_key
from app.kit.trust import TrustStore


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    master_key: MasterKey
    trust: TrustStore
    controller_key: Ed25519PrivateKey
    _wake: asyncio.Event | None = field(default=None, repr=False)

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
            controller_key=load_or_create_private_key(settings.resolved_controller_key_file),
        )

    def worker_wake(self) -> asyncio.Event:
        """Set after each committed request so an embedded worker delivers without waiting."""
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def notify_worker(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        await self.engine.dispose()
