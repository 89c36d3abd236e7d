"""A hosted Domain and its Bindings (webmail, mail) to certificates."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin
from app.versioning import version_column

SERVICES = ("webmail", "mail")


class Domain(IdMixin, TimestampMixin, Base):
    __tablename__ = "domains"
    # The lists page by name within a server or an account: an index in that order reads one
    # page whatever the number of domains (a server_id index alone sorts them all).
    __table_args__ = (
        Index("ix_domains_server_id_name", "server_id", "name"),
        Index("ix_domains_account_id_name", "account_id", "name"),
    )

    name: Mapped[str] = mapped_column(String(253), unique=True)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="RESTRICT"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))


class Binding(IdMixin, TimestampMixin, Base):
    __tablename__ = "bindings"
    __table_args__ = (UniqueConstraint("domain_id", "service"),)

    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    service: Mapped[str] = mapped_column(String(16))  # "webmail" | "mail"
    certificate_id: Mapped[str] = mapped_column(
        ForeignKey("certificates.id", ondelete="RESTRICT"), index=True
    )
    version: Mapped[int] = version_column()  # every change of the row (app/versioning.py): the ETag
