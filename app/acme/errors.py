"""Errors of ACME issuance, tagged with the step that failed.

The worker stores the failure on the order and decides whether and when to retry; for that it needs
to know *where* issuance stopped (``step``), a stable slug (``code``) and, when the CA said why, the
CA's own problem document (RFC 8555 §6.7, RFC 7807/9457) unchanged: type, detail, status and
``subproblems`` each with its ``identifier`` (RFC 8555 §6.7.1).

Tree::

    AcmeError(step, problem, detail)       code
    ├── AccountError        "account"       acme_account_failed
    ├── OrderError          "order"         acme_order_failed
    ├── DnsUpdateError      "dns_update"    the DNS provider's code (dns_tsig_rejected, …)
    ├── PropagationError    "propagation"   dns_propagation_timeout
    ├── HttpPublishError    "http_publish"  http01_publish_failed
    ├── ValidationError     "validation"    acme_validation_failed
    ├── FinalizationError   "finalization"  acme_finalization_failed
    ├── DownloadError       "download"      acme_download_failed
    └── RenewalInfoError    "renewal_info"  acme_renewal_info_failed
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.kit.conditions import condition
from app.problems import RuleViolation

STEPS = (
    "account",
    "order",
    "dns_update",
    "propagation",
    "http_publish",
    "validation",
    "finalization",
    "download",
    "renewal_info",
)


class AcmeError(Exception):
    """An issuance failure at ``step``; ``problem`` is the CA's problem document, if it sent one."""

    step = "acme"
    code = "acme_error"

    def __init__(
        self,
        detail: str,
        *,
        problem: dict[str, Any] | None = None,
        code: str | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problem = problem
        self.timed_out = timed_out
        if code:
            self.code = code

    @property
    def problem_type(self) -> str | None:
        """The ACME error type, e.g. ``urn:ietf:params:acme:error:unauthorized``."""
        return (self.problem or {}).get("type")

    def condition(self, at: datetime) -> dict[str, Any]:
        """What the order row stores as its error (``app.kit.conditions``; no secrets)."""
        return condition(self.code, self.detail, at=at, step=self.step,
                         details={"problem": self.problem, "timed_out": self.timed_out or None})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(step={self.step!r}, code={self.code!r}, detail={self.detail!r})"
        )


class AccountError(AcmeError):
    step, code = "account", "acme_account_failed"


class OrderError(AcmeError):
    step, code = "order", "acme_order_failed"


class DnsUpdateError(AcmeError):
    step, code = "dns_update", "dns_update_failed"


class PropagationError(AcmeError):
    step, code = "propagation", "dns_propagation_timeout"


class HttpPublishError(AcmeError):
    step, code = "http_publish", "http01_publish_failed"


class ValidationError(AcmeError):
    step, code = "validation", "acme_validation_failed"


class FinalizationError(AcmeError):
    step, code = "finalization", "acme_finalization_failed"


class DownloadError(AcmeError):
    step, code = "download", "acme_download_failed"


class RenewalInfoError(AcmeError):
    step, code = "renewal_info", "acme_renewal_info_failed"


class DnsTargetRefused(RuleViolation):
    """A customer's DNS provider or propagation name server is not a public address on port 53.

    Raised when the provider is stored (app.outbound, the outbound guard); the same check at use
    fails the order with ``dns_unreachable``.
    """

    code, title = "dns_target_not_allowed", "The DNS server is not a public address on port 53"


CUSTOMER_DETAILS = {
    "dns_unreachable": "The DNS server could not be reached, "
    "or is not an address certpost may contact.",
}
"""What a customer reads instead of the detail, per code. The detail of ``dns_unreachable``
names the address, port and the socket error, which tells an open port (EOFError) from a closed
one (ConnectionRefusedError); an admin still sees it on the order."""


def customer_view(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """An order's (or a renewal's) condition as a customer may read it: for the codes in
    ``CUSTOMER_DETAILS``, their fixed message and no CA problem document."""
    if not error or error.get("code") not in CUSTOMER_DETAILS:
        return error
    out = {**error, "message": CUSTOMER_DETAILS[error["code"]]}
    details = {k: v for k, v in (error.get("details") or {}).items() if k != "problem"}
    out.pop("details", None)
    if details:
        out["details"] = details
    return out


if TYPE_CHECKING:
    from acme import messages


def _is_acme_error(exc: BaseException) -> bool:
    """A CA's problem document (``acme.messages.Error``). Without the ``acme`` package loaded
    no such error exists, so the check does not load it (`certpost serve` starts without it)."""
    loaded = sys.modules.get("acme.messages")
    return loaded is not None and isinstance(exc, loaded.Error)


def problem_document(error: messages.Error) -> dict[str, Any]:
    """The CA's problem document as plain JSON, subproblems and identifiers included."""
    return json.loads(error.json_dumps())


def problem_from_exception(exc: BaseException) -> dict[str, Any] | None:
    return problem_document(exc) if _is_acme_error(exc) else None


def describe(exc: BaseException) -> str:
    """A one-line reason for logs and the order's error, without request bodies."""
    if _is_acme_error(exc):
        return exc.detail or exc.typ or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
