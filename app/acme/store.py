"""Storing an issued certificate: one transaction that stores (or replaces) the material,
binds it when the order asked, marks the order valid, and so writes the deployment outbox.

Storing and marking the order valid together means a worker dying in between cannot leave
an issued certificate unrecorded and then order it a second time.
"""

from __future__ import annotations

from datetime import datetime

from app.accounts.caller import Caller
from app.acme import transitions
from app.acme.models import CertificateOrder
from app.acme.order import IssuedCertificate
from app.certificates import errors
from app.certificates.models import Certificate
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.context import AppContext
from app.domains.repository import DomainRepository
from app.domains.service import DomainService
from app.kit import x509 as kx
from app.kit.time import utc_now


async def store_issued(ctx: AppContext, order: CertificateOrder, issued: IssuedCertificate, renewal_at: datetime,
                       caller: Caller, *, authorizations: list[dict], duration_ms: int) -> str:
    try:
        # The same reading and rules as an upload; a refusal ends the order ``invalid`` with
        # that rule's code (runner.py records an AppError at step "store"), not "crashed".
        mat = await ctx.material_reader().from_pem(
            issued.certificate_pem, issued.private_key_pem, chain_pem=issued.chain_pem
        )
    except kx.MaterialError as exc:
        raise errors.from_material_error(exc) from None
    async with ctx.sessionmaker() as session:
        certs = CertificateService(CertificateRepository(session), ctx.master_key)
        existing = await session.get(Certificate, order.certificate_id) if order.certificate_id else None
        previous = existing.fingerprint_sha256 if existing is not None else None
        if existing is not None:
            cert = await certs.replace(caller, existing.id, mat, None)
        else:
            cert = await certs.store(mat, account_id=order.account_id, name=f"ACME {order.names[0]}", source="acme",
                                     caller=caller)
        transitions.issued(cert, order, renewal_at)
        if order.bind and order.domain:
            domains = DomainService(DomainRepository(session), certs, ctx.settings.expiring_days)
            for service in order.bind:
                await domains.bind(caller, order.domain, service, cert.id)
        row = await session.get(CertificateOrder, order.id)
        transitions.order_valid(session, row, cert, caller, now=utc_now(), previous_fingerprint=previous,
                                authorizations=authorizations, duration_ms=duration_ms)
        await session.commit()
        return cert.id
