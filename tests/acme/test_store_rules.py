"""An issued certificate that breaks an upload rule ends its order with that rule's code.

No CA here issues such a certificate (Pebble signs what certpost's CSRs ask for, and those pass),
so the issued material comes from the test PKI and goes through ``store_issued`` as the runner
calls it; the runner's own mapping turns the refusal into the order's error.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from app.accounts.caller import SYSTEM
from app.acme import runner
from app.acme.models import CertificateOrder
from app.acme.order import IssuedCertificate
from app.acme.store import store_issued
from app.certificates.models import Certificate
from app.kit.time import utc_now
from app.problems import AppError
from tests.support.pki import Issued


def _issued(issued: Issued) -> IssuedCertificate:
    return IssuedCertificate(
        certificate_pem=issued.cert_pem, chain_pem=issued.chain_pem, fullchain_pem=issued.fullchain_pem,
        private_key_pem=issued.key_pem, key_type="ec-p521", names=("mail.a.test",),
        not_before=issued.cert.not_valid_before_utc, not_after=issued.cert.not_valid_after_utc,
        serial_number=issued.cert.serial_number, fingerprint_sha256=issued.fingerprint, order_uri=None,
        certificate_url=None,
    )


async def test_rule_break_is_coded_not_crashed(context, test_ca):
    async with context.sessionmaker() as session:
        order = CertificateOrder(names=["mail.a.test"], challenge="http-01", key_type="ec-p256", bind=[],
                                 status="processing", authorizations=[])
        session.add(order)
        await session.commit()
        session.expunge(order)
    p521 = test_ca.issue(["mail.a.test"], key=ec.generate_private_key(ec.SECP521R1()))
    with pytest.raises(AppError) as caught:
        await store_issued(context, order, _issued(p521), utc_now(), SYSTEM, authorizations=[], duration_ms=1)
    assert caught.value.code == "curve_unsupported"
    error = runner._condition_of(caught.value, utc_now())
    assert (error["step"], error["code"]) == ("store", "curve_unsupported") and error["message"]
    async with context.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Certificate)) == 0
