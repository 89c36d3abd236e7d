"""Every change of an order's state and of a certificate's renewal state, with its event.

The worker (``runner.py``, ``store.py``, ``renewal.py``) and the API (``AcmeService.renew_now``)
call these instead of setting the columns themselves, so each change is written one way and is
never made without its event (app/events), in the caller's transaction. A failure is a condition
(``app.kit.conditions``); a customer's copy (the certificate's ``renewal_error``, the events of
its account) is ``customer_view`` of it, as the API shows orders to customers.
"""

from __future__ import annotations

from datetime import datetime

from app.accounts.caller import Caller
from app.acme.errors import customer_view
from app.acme.models import CertificateOrder
from app.certificates.models import Certificate
from app.deployments.policy import next_attempt_at
from app.events import EventKind, record


def order_valid(session, order: CertificateOrder, cert: Certificate, caller: Caller, *, now: datetime,
                previous_fingerprint: str | None, authorizations: list[dict], duration_ms: int) -> None:
    """The order issued ``cert`` (stored, or a renewal's replaced material): ``order.valid``, and
    ``renewal.succeeded`` for a renewal."""
    order.status, order.error, order.finished_at = "valid", None, now
    order.result_certificate_id = cert.id
    order.authorizations, order.duration_ms = authorizations, duration_ms
    order.lease_until = order.lease_owner = None
    facts = {"fingerprint_sha256": cert.fingerprint_sha256,
             "not_after": cert.not_after.isoformat() if cert.not_after else None}
    record(session, EventKind.ORDER_VALID, caller, account_id=order.account_id,
           subjects={"order": order.id, "certificate": cert.id, "domain": order.domain},
           data={"names": list(order.names), "purpose": order.purpose, **facts})
    if order.purpose == "renewal":
        record(session, EventKind.RENEWAL_SUCCEEDED, caller, account_id=order.account_id,
               subjects={"order": order.id, "certificate": cert.id},
               data={**facts, "previous_fingerprint_sha256": previous_fingerprint,
                     "renewal_at": cert.renewal_at.isoformat() if cert.renewal_at else None})


def issued(cert: Certificate, order: CertificateOrder, renewal_at: datetime) -> None:
    """A certificate fresh from an order: renewal scheduled at ``renewal_at``, no failure left."""
    cert.source, cert.order_id, cert.renewal_at = "acme", order.id, renewal_at
    cert.renewal_status, cert.renewal_error = "scheduled", None
    cert.renewal_attempts, cert.next_renewal_attempt_at = 0, None


def order_invalid(session, order: CertificateOrder, condition: dict, caller: Caller, *, now: datetime,
                  authorizations: list[dict], duration_ms: int) -> None:
    """The order failed for good (its condition says where and why): ``order.invalid``."""
    order.status, order.error, order.finished_at = "invalid", condition, now
    order.authorizations, order.duration_ms = authorizations, duration_ms
    order.lease_until = order.lease_owner = None
    record(session, EventKind.ORDER_INVALID, caller, account_id=order.account_id,
           subjects={"order": order.id, "certificate": order.certificate_id, "domain": order.domain},
           data={"names": list(order.names), "purpose": order.purpose, "condition": customer_view(condition)})


def renewal_scheduled(session, cert: Certificate, order: CertificateOrder, caller: Caller) -> None:
    """A renewal order was written for ``cert`` (by the worker when due, or ``renew`` on request)."""
    cert.renewal_status = "renewing"
    record(session, EventKind.RENEWAL_SCHEDULED, caller, account_id=cert.account_id,
           subjects={"order": order.id, "certificate": cert.id},
           data={"names": list(order.names),
                 "renewal_at": cert.renewal_at.isoformat() if cert.renewal_at else None})


def renewal_failed(session, cert: Certificate, condition: dict, caller: Caller, *, now: datetime,
                   base: float, cap: float) -> None:
    """A renewal could not be ordered, or its order failed: shown on the certificate in the
    customer's form, retried after an exponential backoff (``deployments.policy``)."""
    cert.renewal_status, cert.renewal_error = "failed", customer_view(condition)
    cert.renewal_attempts += 1
    cert.next_renewal_attempt_at = next_attempt_at(now, cert.renewal_attempts, base=base, cap=cap)
    record(session, EventKind.RENEWAL_FAILED, caller, account_id=cert.account_id,
           subjects={"certificate": cert.id},
           data={"attempts": cert.renewal_attempts, "next_attempt_at": cert.next_renewal_attempt_at.isoformat(),
                 "condition": cert.renewal_error})
