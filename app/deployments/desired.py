"""The desired configuration of one server: what it should serve, by host name.

``load_desired`` reads it in three queries whatever the number of domains; ``DesiredConfig``
is the document the agent receives (``PUT /v1/config``, docs/agent.md), minus the bundles,
which are added only for the fingerprints the agent does not already hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.certificates.models import Certificate
from app.domains.models import Binding, Domain
from app.servers.models import Server
from app.servers.software import capabilities


@dataclass
class DesiredConfig:
    generation: int
    server_hostname: str
    server_certificate: str  # fingerprint of the server-wide mail certificate
    webmail_default: str  # fingerprint nginx presents for names without a binding
    mail: dict[str, str] = field(default_factory=dict)  # mail.<d> -> fingerprint
    webmail: dict[str, str] = field(default_factory=dict)  # webmail.<d> -> fingerprint
    certificate_ids: dict[str, str] = field(default_factory=dict)  # fingerprint -> certificate id

    def document(self) -> dict:
        """The agent's document without bundles (also the API's preview)."""
        return {
            "generation": self.generation,
            "server_hostname": self.server_hostname,
            "server_certificate": self.server_certificate,
            "webmail_default": self.webmail_default,
            "mail": dict(sorted(self.mail.items())),
            "webmail": dict(sorted(self.webmail.items())),
        }

    @property
    def fingerprints(self) -> set[str]:
        return set(self.certificate_ids)


async def load_desired(session: AsyncSession, server: Server) -> DesiredConfig:
    defaults = {
        c.id: c
        for c in await session.scalars(
            select(Certificate).where(Certificate.id.in_({server.mail_certificate_id, server.default_certificate_id}))
        )
    }
    server_cert = defaults[server.mail_certificate_id]
    default_cert = defaults[server.default_certificate_id]
    config = DesiredConfig(
        generation=server.desired_generation,
        server_hostname=server.hostname,
        server_certificate=server_cert.fingerprint_sha256,
        webmail_default=default_cert.fingerprint_sha256,
        certificate_ids={
            server_cert.fingerprint_sha256: server_cert.id,
            default_cert.fingerprint_sha256: default_cert.id,
        },
    )
    per_domain_mail = capabilities(server.software).per_domain_mail
    rows = await session.execute(
        select(Domain.name, Binding.service, Certificate.id, Certificate.fingerprint_sha256)
        .join(Binding, Binding.domain_id == Domain.id)
        .join(Certificate, Certificate.id == Binding.certificate_id)
        .where(Domain.server_id == server.id)
    )
    for domain, service, cert_id, fingerprint in rows:
        if service == "mail" and not per_domain_mail:
            continue  # refused at binding time; kept out in case the software changed since
        target = config.mail if service == "mail" else config.webmail
        target[f"{service}.{domain}"] = fingerprint
        config.certificate_ids[fingerprint] = cert_id
    return config
