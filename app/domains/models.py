"""A hosted Domain and its Bindings (webmail, mail) to certificates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, false
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
        # The TLS list's expiry sort and its filters (app/domains/tls_summary.py): the expiry
        # order within a server, an account or everything; and the few domains with a lasting
        # reason to warn, or a certificate not valid yet, found without reading the others.
        Index("ix_domains_server_id_tls_soonest", "server_id", "tls_soonest", "name"),
        Index("ix_domains_account_id_tls_soonest", "account_id", "tls_soonest", "name"),
        Index("ix_domains_tls_soonest", "tls_soonest", "name"),
        Index("ix_domains_server_id_tls_flags", "server_id", "tls_flags", "name"),
        Index("ix_domains_account_id_tls_flags", "account_id", "tls_flags", "name"),
        Index("ix_domains_tls_flags", "tls_flags", "name"),
        Index("ix_domains_server_id_tls_latest_start", "server_id", "tls_latest_start"),
        Index("ix_domains_account_id_tls_latest_start", "account_id", "tls_latest_start"),
        Index("ix_domains_tls_latest_start", "tls_latest_start"),
    )

    name: Mapped[str] = mapped_column(String(253), unique=True)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="RESTRICT"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    # What the domain presents, kept by every write that changes it (app/domains/tls_summary.py):
    # the earlier notAfter and the later notBefore of its two presented certificates, and the
    # reasons to warn that do not depend on the moment (``rules.identity_reasons``, as bits).
    # NULL only between the insert of a domain and the refresh in the same transaction.
    tls_soonest: Mapped[datetime | None]
    tls_latest_start: Mapped[datetime | None]
    tls_flags: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Which certificate each service presents (its binding's, else the server's default) and
    # whether it is bound: the TLS list reads a page's rows from this table alone (no binding
    # or server lookup per row). Plain ids, no foreign key: the bindings and the server's
    # columns are the truth, these their copy kept with the facts above.
    tls_webmail_certificate_id: Mapped[str | None] = mapped_column(String(36))
    tls_mail_certificate_id: Mapped[str | None] = mapped_column(String(36))
    tls_webmail_bound: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    tls_mail_bound: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Binding(IdMixin, TimestampMixin, Base):
    __tablename__ = "bindings"
    __table_args__ = (UniqueConstraint("domain_id", "service"),)

    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    service: Mapped[str] = mapped_column(String(16))  # "webmail" | "mail"
    certificate_id: Mapped[str] = mapped_column(
        ForeignKey("certificates.id", ondelete="RESTRICT"), index=True
    )
    version: Mapped[int] = version_column()  # every change of the row (app/versioning.py): the ETag
