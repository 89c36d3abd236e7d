"""A mail Server, its two default certificates and its deployment generations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin


class Server(IdMixin, TimestampMixin, Base):
    __tablename__ = "servers"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    hostname: Mapped[str] = mapped_column(String(253), index=True)
    software: Mapped[str] = mapped_column(String(32))
    agent_url: Mapped[str | None] = mapped_column(String(500))
    agent_tls_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The server-wide mail certificate: served for no SNI or an unknown name (domain.md).
    mail_certificate_id: Mapped[str] = mapped_column(
        ForeignKey("certificates.id", ondelete="RESTRICT"), index=True
    )
    # What nginx presents for a webmail name without a binding of its own.
    default_certificate_id: Mapped[str] = mapped_column(
        ForeignKey("certificates.id", ondelete="RESTRICT"), index=True
    )
    # Desired state version; bumped in the same transaction as every change to what it serves.
    desired_generation: Mapped[int] = mapped_column(Integer, default=0)
    applied_generation: Mapped[int] = mapped_column(Integer, default=0)
    # Distinct certificates bound as mail on this server's domains (the Dovecot capacity
    # warning), kept by DomainService on every mail bind, rebind, unbind and domain delete.
    mail_certificate_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The document (host names and fingerprints, no keys) the agent last confirmed applying:
    # the base for sending only what changed next time (see deployments/delivery.py). Deferred:
    # megabytes at 10,000 domains, read by the delivery alone (undefer it there).
    applied_config: Mapped[dict | None] = mapped_column(JSON, deferred=True, deferred_raiseload=True)
    # One worker at a time delivers to a server: it holds this lease (see deployments/claims.py).
    deploy_lease_until: Mapped[datetime | None]
    deploy_lease_owner: Mapped[str | None] = mapped_column(String(64))
