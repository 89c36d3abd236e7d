"""When to renew: ACME Renewal Information (RFC 9773) and the fallback rule.

A CA that publishes ``renewalInfo`` in its directory suggests a renewal window per certificate
(RFC 9773 §4.2) — and can move it earlier when it must revoke. Without ARI, renew when a third
of the lifetime remains (Let's Encrypt's advice; 30 days before expiry for 90-day certificates).
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from typing import NamedTuple

import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography import x509

from app.acme.errors import RenewalInfoError, describe, problem_from_exception


class RenewalWindow(NamedTuple):
    """The CA's suggested window (RFC 9773 §4.2), aware UTC; unpacks as ``(start, end)``."""

    start: dt.datetime
    end: dt.datetime


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def ari_cert_id(cert: x509.Certificate | bytes | str) -> str:
    """The certificate's ARI identifier (RFC 9773 §4.1).

    base64url(authorityKeyIdentifier.keyIdentifier) "." base64url(serial as DER INTEGER bytes),
    without padding. The serial keeps the leading zero byte DER needs for a positive number
    whose top bit is set.
    """
    if not isinstance(cert, x509.Certificate):
        data = cert.encode() if isinstance(cert, str) else cert
        cert = x509.load_pem_x509_certificate(data)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    if aki.key_identifier is None:
        raise ValueError("certificate has no authority key identifier; ARI needs one")
    serial = cert.serial_number
    serial_bytes = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_bytes)}"


def renewal_info(client: acme_client.ClientV2, cert_pem: bytes | str) -> RenewalWindow | None:
    """The CA's suggested window for `cert_pem`, or None if the CA does not offer ARI.

    A plain GET, no signature (RFC 9773 §4.1). Raises RenewalInfoError when the CA offers ARI
    but the request fails; callers then fall back to ``default_renewal_at``.
    """
    try:
        base = client.directory["renewalInfo"]
    except KeyError:
        return None
    if not base:
        return None
    url = f"{base.rstrip('/')}/{ari_cert_id(cert_pem)}"
    try:
        response = client.net.get(url, content_type="application/json")
        info = messages.RenewalInfo.from_json(response.json())
    except (messages.Error, acme_errors.Error, requests.RequestException, ValueError) as exc:
        raise RenewalInfoError(
            f"renewalInfo request failed: {describe(exc)}", problem=problem_from_exception(exc)
        ) from exc
    window = info.suggested_window
    start, end = _aware(window.start), _aware(window.end)
    if end < start:
        raise RenewalInfoError("the CA suggested a renewal window that ends before it starts")
    return RenewalWindow(start, end)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def default_renewal_at(not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """When a third of the certificate's lifetime remains."""
    return not_after - (not_after - not_before) / 3


def choose_renewal_at(
    window: RenewalWindow, *, now: dt.datetime, rng: random.Random | None = None
) -> dt.datetime:
    """A uniformly random moment in the window, or `now` if the window has passed (RFC 9773 §4.2).

    Random, so that many certificates issued together do not all renew in the same minute.
    """
    if window.end <= now:
        return now
    start = max(window.start, now)
    span = (window.end - start).total_seconds()
    return start + dt.timedelta(seconds=(rng or random).uniform(0, span))
