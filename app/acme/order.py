"""One ACME order from new key to downloaded chain (RFC 8555 §7.4, §7.5, §7.4.2).

Steps and the error each raises (see ``app.acme.errors``)::

    newOrder ─ OrderError
    authorizations: skip "valid" ones (CAs reuse them, §7.1.4); pick our challenge type
    solver.prepare ─ DnsUpdateError / PropagationError / HttpPublishError
    answer every challenge, poll authorizations ─ ValidationError (CA's problem kept)
    solver.cleanup (always, success or failure)
    finalize with the CSR, poll the order ─ FinalizationError
    download the chain ─ DownloadError

Polling is done here instead of in the ``acme`` package, whose loops sleep a fixed second: we start
at ``poll_interval`` and back off to ``max_poll_interval``, and honour a ``Retry-After`` the CA sends
(§7.5.1, §7.4) as long as it fits the deadline. Every request carries the client's timeout.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import josepy as jose
import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from app.acme.errors import (
    AcmeError,
    DownloadError,
    FinalizationError,
    OrderError,
    ValidationError,
    describe,
    problem_document,
    problem_from_exception,
)
from app.acme.keys import generate_private_key, make_csr, normalize_names, private_key_pem
from app.acme.solvers import ChallengeSolver, ChallengeTask

log = logging.getLogger("certpost.acme")

_TRANSPORT_ERRORS = (
    messages.Error,
    acme_errors.Error,
    jose.errors.Error,
    requests.RequestException,
    ValueError,
)


@dataclass(frozen=True)
class IssuedCertificate:
    """The result of a successful order. ``private_key_pem`` is secret: store it encrypted."""

    certificate_pem: str
    chain_pem: str
    fullchain_pem: str
    private_key_pem: str
    key_type: str
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    serial_number: int
    fingerprint_sha256: str
    order_uri: str | None
    certificate_url: str | None

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return (
            f"IssuedCertificate(names={self.names!r}, not_after={self.not_after.isoformat()}, "
            f"serial={self.serial_number:x})"
        )


class _Clock:
    """Deadline plus a backing-off poll interval."""

    def __init__(self, timeout: float, poll_interval: float, max_poll_interval: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.first = poll_interval
        self.max = max_poll_interval
        self.timeout = timeout

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def sleep(self, interval: float, response: requests.Response | None) -> float:
        """Sleep `interval` (or the CA's Retry-After) within the deadline; the next interval."""
        wait = interval
        retry_after = _retry_after_seconds(response)
        if retry_after is not None:
            wait = max(wait, retry_after)
        wait = min(wait, max(0.0, self.remaining()))
        if wait > 0:
            time.sleep(wait)
        return min(interval * 1.5, self.max)


def _retry_after_seconds(response: requests.Response | None) -> float | None:
    if response is None or "Retry-After" not in response.headers:
        return None
    moment = acme_client.ClientV2.retry_after(response, default=0)
    return max(0.0, (moment - dt.datetime.now()).total_seconds())


def _post_as_get(client: acme_client.ClientV2, url: str) -> requests.Response:
    """POST-as-GET (RFC 8555 §6.3), through the library's nonce and badNonce handling."""
    return client.net.post(url, None, new_nonce_url=client.directory["newNonce"])


def issue(
    client: acme_client.ClientV2,
    names: Sequence[str],
    key_type: str,
    solver: ChallengeSolver,
    *,
    poll_interval: float = 0.2,
    max_poll_interval: float = 5.0,
    timeout: float = 300.0,
) -> IssuedCertificate:
    """Order a certificate for `names` with a new `key_type` key, solving with `solver`.

    Synchronous and blocking; the worker runs it in a thread. Raises an ``AcmeError`` subclass
    whose ``step`` says where it stopped; the solver's records are withdrawn in every case.
    """
    names = normalize_names(list(names))
    key = generate_private_key(key_type)
    csr_pem = make_csr(key, names)
    clock = _Clock(timeout, poll_interval, max_poll_interval)

    try:
        orderr = client.new_order(csr_pem)
    except _TRANSPORT_ERRORS as exc:
        raise OrderError(
            f"newOrder failed: {describe(exc)}", problem=problem_from_exception(exc)
        ) from exc
    log.info("ACME order %s for %s", orderr.uri, ", ".join(names))

    _validate(client, orderr.authorizations, solver, clock)
    certificate_url = _finalize(client, orderr, clock)
    fullchain = _download(client, certificate_url)
    return _result(fullchain, key, key_type, names, orderr.uri, certificate_url)


# -- authorizations ------------------------------------------------------------------------


def _tasks(
    client: acme_client.ClientV2,
    authzrs: Sequence[messages.AuthorizationResource],
    solver: ChallengeSolver,
) -> list[tuple[messages.AuthorizationResource, ChallengeTask]]:
    account_key = client.net.key
    pending = []
    for authzr in authzrs:
        body = authzr.body
        identifier = body.identifier.value
        label = f"*.{identifier}" if body.wildcard else identifier
        if body.status == messages.STATUS_VALID:
            log.info("authorization for %s already valid, skipped", label)
            continue
        if body.status != messages.STATUS_PENDING:
            raise ValidationError(
                f"authorization for {label} is {body.status.name}, not pending",
                problem=_authz_problem(authzr),
            )
        challb = next((c for c in body.challenges if c.chall.typ == solver.challenge_type), None)
        if challb is None:
            offered = ", ".join(c.chall.typ for c in body.challenges)
            raise OrderError(
                f"the CA offers no {solver.challenge_type} challenge for {label} (offers {offered})",
                code="acme_challenge_unavailable",
            )
        key_authz, validation = solver.validation_for(challb, account_key)
        task = ChallengeTask(identifier, bool(body.wildcard), challb, key_authz, validation)
        pending.append((authzr, task))
    return pending


def _validate(
    client: acme_client.ClientV2,
    authzrs: Sequence[messages.AuthorizationResource],
    solver: ChallengeSolver,
    clock: _Clock,
) -> None:
    pending = _tasks(client, authzrs, solver)
    if not pending:
        return
    tasks = [task for _, task in pending]
    try:
        solver.prepare(tasks)
        for _, task in pending:
            try:
                client.answer_challenge(
                    task.challenge, task.challenge.chall.response(client.net.key)
                )
            except _TRANSPORT_ERRORS as exc:
                raise ValidationError(
                    f"answering the challenge for {task.identifier} failed: {describe(exc)}",
                    problem=problem_from_exception(exc),
                ) from exc
        _poll_authorizations(client, [a for a, _ in pending], clock)
    finally:
        solver.cleanup(tasks)


def _poll_authorizations(
    client: acme_client.ClientV2,
    authzrs: Sequence[messages.AuthorizationResource],
    clock: _Clock,
) -> None:
    """Poll until no authorization is pending (§7.5.1); collect every failure's problem."""
    waiting = {a.uri: a for a in authzrs}
    failed: list[messages.AuthorizationResource] = []
    interval = clock.first
    while waiting:
        last = None
        for uri in list(waiting):
            try:
                last = _post_as_get(client, uri)
                authzr = messages.AuthorizationResource(
                    body=messages.Authorization.from_json(last.json()), uri=uri
                )
            except _TRANSPORT_ERRORS as exc:
                raise ValidationError(
                    f"polling the authorization {uri} failed: {describe(exc)}",
                    problem=problem_from_exception(exc),
                ) from exc
            status = authzr.body.status
            if status == messages.STATUS_VALID:
                del waiting[uri]
            elif status != messages.STATUS_PENDING:
                del waiting[uri]
                failed.append(authzr)
        if failed:
            # One failed authorization invalidates the order (§7.1.6); stop waiting.
            raise ValidationError(_failure_detail(failed), problem=_validation_problem(failed))
        if not waiting:
            return
        if clock.remaining() <= 0:
            raise ValidationError(
                f"authorizations still pending after {clock.timeout:g} s", timed_out=True
            )
        interval = clock.sleep(interval, last)


def _authz_problem(authzr: messages.AuthorizationResource) -> dict[str, Any] | None:
    """The failed challenge's error, with the identifier it concerns (RFC 8555 §6.7.1)."""
    body = authzr.body
    for challb in body.challenges:
        if challb.error is not None:
            problem = problem_document(challb.error)
            problem.setdefault(
                "identifier", {"type": body.identifier.typ.name, "value": body.identifier.value}
            )
            return problem
    return None


def _validation_problem(failed: Sequence[messages.AuthorizationResource]) -> dict[str, Any] | None:
    problems = [p for p in (_authz_problem(a) for a in failed) if p is not None]
    if not problems:
        return None
    if len(problems) == 1:
        return problems[0]
    return {
        "type": "urn:ietf:params:acme:error:compound",
        "detail": "several authorizations failed",
        "subproblems": problems,
    }


def _failure_detail(failed: Sequence[messages.AuthorizationResource]) -> str:
    parts = []
    for authzr in failed:
        problem = _authz_problem(authzr) or {}
        name = authzr.body.identifier.value
        parts.append(f"{name}: {problem.get('detail') or authzr.body.status.name}")
    return "validation failed for " + "; ".join(parts)


# -- finalization and download ---------------------------------------------------------------


def _finalize(client: acme_client.ClientV2, orderr: messages.OrderResource, clock: _Clock) -> str:
    """Send the CSR (§7.4) and poll the order until valid; return the certificate URL."""
    try:
        response = client.net.post(
            orderr.body.finalize,
            messages.CertificateRequest(csr=x509.load_pem_x509_csr(orderr.csr_pem)),
            new_nonce_url=client.directory["newNonce"],
        )
        body = messages.Order.from_json(response.json())
    except _TRANSPORT_ERRORS as exc:
        raise FinalizationError(
            f"finalize failed: {describe(exc)}", problem=problem_from_exception(exc)
        ) from exc
    interval = clock.first
    while True:
        if body.status == messages.STATUS_VALID and body.certificate:
            return body.certificate
        if body.status == messages.STATUS_INVALID:
            problem = problem_document(body.error) if body.error is not None else None
            detail = (problem or {}).get("detail") or "the CA marked the order invalid"
            raise FinalizationError(f"order invalid: {detail}", problem=problem)
        if clock.remaining() <= 0:
            raise FinalizationError(
                f"order still {body.status.name} after {clock.timeout:g} s", timed_out=True
            )
        interval = clock.sleep(interval, response)
        try:
            response = _post_as_get(client, orderr.uri)
            body = messages.Order.from_json(response.json())
        except _TRANSPORT_ERRORS as exc:
            raise FinalizationError(
                f"polling the order failed: {describe(exc)}", problem=problem_from_exception(exc)
            ) from exc


def _download(client: acme_client.ClientV2, certificate_url: str) -> str:
    """Fetch the PEM chain (§7.4.2, application/pem-certificate-chain)."""
    try:
        response = client.net.post(
            certificate_url,
            None,
            new_nonce_url=client.directory["newNonce"],
        )
    except _TRANSPORT_ERRORS as exc:
        raise DownloadError(
            f"certificate download failed: {describe(exc)}", problem=problem_from_exception(exc)
        ) from exc
    response.encoding = "utf-8"
    return response.text


def _result(
    fullchain: str,
    key,
    key_type: str,
    names: list[str],
    order_uri: str | None,
    certificate_url: str,
) -> IssuedCertificate:
    try:
        certs = x509.load_pem_x509_certificates(fullchain.encode())
    except ValueError as exc:
        raise DownloadError(f"the CA sent no parsable PEM chain: {exc}") from exc
    leaf = certs[0]
    pem = serialization.Encoding.PEM
    if leaf.public_key().public_bytes(
        pem, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise DownloadError("the downloaded certificate does not match the order's key")
    return IssuedCertificate(
        certificate_pem=leaf.public_bytes(pem).decode(),
        chain_pem="".join(c.public_bytes(pem).decode() for c in certs[1:]),
        fullchain_pem="".join(c.public_bytes(pem).decode() for c in certs),
        private_key_pem=private_key_pem(key).decode(),
        key_type=key_type,
        names=tuple(names),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        serial_number=leaf.serial_number,
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        order_uri=order_uri,
        certificate_url=certificate_url,
    )


__all__ = ["AcmeError", "IssuedCertificate", "issue"]
