"""Talking to an ACME CA: the signed-request client and the account (RFC 8555 §7.1, §7.3).

A thin layer over certbot's ``acme`` package. It adds what the worker needs: a timeout on every
request (a CA that hangs must not hang a worker thread), our user agent, a CA bundle for private
CAs (Pebble in tests), account creation *or* recovery from a stored key, External Account Binding
(RFC 8555 §7.3.4) and errors tagged with the step that failed.

Issuance itself lives in ``app.acme.order``; this module re-exports it so that callers need only
``app.acme.client``.
"""

from __future__ import annotations

import logging

import josepy as jose
import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from requests.adapters import HTTPAdapter

from app.acme.errors import AccountError, describe, problem_from_exception
from app.acme.keys import account_jwk, generate_account_key, jws_algorithm

log = logging.getLogger("certpost.acme")

USER_AGENT = "certpost"
DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds for any single HTTP request to the CA (connect and read each)."""


def make_client(
    directory_url: str,
    account_key_pem: bytes | str,
    *,
    account_uri: str | None = None,
    ca_bundle: str | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    directory: messages.Directory | None = None,
    connections: int | None = None,
) -> acme_client.ClientV2:
    """A ClientV2 for `directory_url` signing with the account key; fetches the directory
    unless given one read earlier (RFC 8555 §7.1.1: clients may cache it).

    With `account_uri` the client is ready for order requests (the `kid` of RFC 8555 §6.2)
    without a round trip; without it, call `register_or_load_account`. `connections` sizes the
    pool of kept-alive connections to the CA, for a client that many threads share.
    """
    jwk = account_jwk(account_key_pem)
    net = acme_client.ClientNetwork(
        jwk,
        alg=jws_algorithm(jwk),
        verify_ssl=ca_bundle or True,  # a CA file path is accepted by requests' `verify`
        user_agent=USER_AGENT,
        timeout=request_timeout,  # type: ignore[arg-type]  # requests accepts floats
    )
    if connections:
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=connections)
        net.session.mount("http://", adapter)
        net.session.mount("https://", adapter)
    try:
        if directory is None:
            directory = acme_client.ClientV2.get_directory(directory_url, net)
    except (requests.RequestException, acme_errors.Error, jose.errors.Error, ValueError) as exc:
        raise AccountError(
            f"cannot read the ACME directory {directory_url}: {describe(exc)}",
            problem=problem_from_exception(exc),
        ) from exc
    client = acme_client.ClientV2(directory, net)
    if account_uri:
        net.account = messages.RegistrationResource(body=messages.Registration(), uri=account_uri)
    return client


def register_or_load_account(
    directory_url: str,
    account_key_pem: bytes | str | None,
    email: str | None,
    eab_kid: str | None = None,
    eab_hmac: str | None = None,
    ca_bundle: str | None = None,
    *,
    account_key_type: str = "ec-p256",
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> tuple[acme_client.ClientV2, bytes, str]:
    """Create the account, or find the existing one for this key (RFC 8555 §7.3, §7.3.1).

    Returns ``(client, account_key_pem, account_uri)``; the client is ready to order. A new
    key (EC P-256 by default) is generated when none is given. Posting newAccount with a key
    that already has an account returns that account (HTTP 200 + Location), so the same call
    recovers a stored account without a separate lookup. Terms of service are agreed to: the
    operator accepted them when configuring the CA.
    """
    if account_key_pem is None:
        account_key_pem = generate_account_key(account_key_type)
    elif isinstance(account_key_pem, str):
        account_key_pem = account_key_pem.encode()
    client = make_client(
        directory_url, account_key_pem, ca_bundle=ca_bundle, request_timeout=request_timeout
    )
    if bool(eab_kid) != bool(eab_hmac):
        raise AccountError("External Account Binding needs both the key id and the HMAC key")
    if client.external_account_required() and not eab_kid:
        raise AccountError(
            "the CA requires External Account Binding (RFC 8555 §7.3.4); configure its key id "
            "and HMAC key",
            code="acme_eab_required",
        )
    eab = None
    if eab_kid and eab_hmac:
        eab = messages.ExternalAccountBinding.from_data(
            account_public_key=client.net.key.public_key(),
            kid=eab_kid,
            hmac_key=eab_hmac,
            directory=client.directory,
        )
    registration = messages.NewRegistration.from_data(
        email=email, terms_of_service_agreed=True, external_account_binding=eab
    )
    created = True
    try:
        regr = client.new_account(registration)
        account_uri = regr.uri
    except acme_errors.ConflictError as exc:
        # Existing account for this key: the Location is its URL (RFC 8555 §7.3.1).
        account_uri = exc.location
        created = False
        client.net.account = messages.RegistrationResource(
            body=messages.Registration(), uri=account_uri
        )
    except (messages.Error, acme_errors.Error, jose.errors.Error, requests.RequestException) as exc:
        raise AccountError(
            f"account registration failed: {describe(exc)}", problem=problem_from_exception(exc)
        ) from exc
    if not account_uri:
        raise AccountError("the CA returned no account URL (Location header)")
    log.info("ACME account %s %s", "created" if created else "loaded", account_uri)
    return client, account_key_pem, account_uri


from app.acme.order import IssuedCertificate, issue

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "USER_AGENT",
    "IssuedCertificate",
    "issue",
    "make_client",
    "register_or_load_account",
]
