"""A mail Server, its two default certificates and its deployment generations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, func
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin
from app.versioning import version_column


class Server(IdMixin, TimestampMixin, Base):
    __tablename__ = "servers"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    hostname: Mapped[str] = mapped_column(String(253), index=True)
    software: Mapped[str] = mapped_column(String(32))
    # A TLS front for the implicit-TLS mail ports (app.servers.software.TLS_FRONTS); NULL: the
    # daemons terminate TLS themselves. Set by an administrator (migration 0012_tls_front).
    tls_front: Mapped[str | None] = mapped_column(String(16))
    agent_url: Mapped[str | None] = mapped_column(String(500))
    agent_tls_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The server-wide mail certificate: served for no SNI or an unknown name (domain.md).
    mail_certificate_id: Mapped[str] = mapped_column(
        ForeignKey("certificates.id", ondelete="RESTRICT"), index=True
    )
    # The self-signed certificate made for the host name at registration (the first value of
    # both the server-wide mail certificate and the webmail default); kept while the server is.
    default_certificate_id: Mapped[str] = mapped_column(
        ForeignKey("certificates.id", ondelete="RESTRICT"), index=True
    )
    # The webmail default an administrator chose (PUT /v1/servers/{id}/webmail-certificate);
    # NULL: none, the server-wide mail certificate is presented (see webmail_default_id).
    webmail_certificate_id: Mapped[str | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="RESTRICT"), index=True
    )
    # Desired state version; bumped in the same transaction as every change to what it serves.
    desired_generation: Mapped[int] = mapped_column(Integer, default=0)
    applied_generation: Mapped[int] = mapped_column(Integer, default=0)
    # Distinct certificates bound as mail on this server's domains (the Dovecot capacity
    # warning), kept by DomainService on every mail bind, rebind, unbind and domain delete.
    version: Mapped[int] = version_column()  # every change of the row (app/versioning.py): the ETag
    mail_certificate_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the agent last confirmed applying: the digest of its whole document
    # (app.kit.digest.config_digest, as the agent reported it) and its three scalars
    # (server_hostname, server_certificate, webmail_default); the names are rows of
    # deployments.models.AppliedName. NULL digest: unknown, the next delivery sends everything.
    applied_digest: Mapped[str | None] = mapped_column(String(64))
    applied_head: Mapped[dict | None] = mapped_column(JSON)
    # One worker at a time delivers to a server: it holds this lease (see deployments/claims.py).
    deploy_lease_until: Mapped[datetime | None]
    deploy_lease_owner: Mapped[str | None] = mapped_column(String(64))
    # When the agent last answered over its pinned TLS (any reply, a refusal included; not a
    # timeout or a refused connection): the "agent silent" alert's input (app/metrics). Set by
    # deliveries (deployments/delivery.py) and drift polls (ServerRepository.agent_answered).
    agent_contact_at: Mapped[datetime | None]

    @hybrid_property
    def webmail_default_id(self) -> str:
        """What nginx presents for HTTPS without SNI, for the server's own host name and for a
        webmail name without a binding: the chosen webmail certificate, else the server-wide
        mail certificate. The latter always covers the host name (it is checked when set and
        when its material is replaced), and it is the certificate an administrator secured for
        that name, so a trusted one removes the warning there too (docs/architecture.md)."""
        return self.webmail_certificate_id or self.mail_certificate_id

    @webmail_default_id.inplace.expression
    @classmethod
    def _webmail_default_id_expression(cls):
        return func.coalesce(cls.webmail_certificate_id, cls.mail_certificate_id)
