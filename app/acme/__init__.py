"""ACME issuance (RFC 8555): the protocol layer, with no database code.

Public surface for the worker (all synchronous; run in a thread)::

    register_or_load_account(directory_url, account_key_pem, email, eab_kid, eab_hmac, ca_bundle)
        -> (client, account_key_pem, account_uri)
    make_client(directory_url, account_key_pem, account_uri=..., ca_bundle=...) -> client
    issue(client, names, key_type, solver, poll_interval=, timeout=) -> IssuedCertificate
    Dns01Solver(provider, propagation_timeout=...), Http01Solver(publish, unpublish)
    renewal_info(client, cert_pem) -> RenewalWindow(start, end) | None
    default_renewal_at(not_before, not_after), choose_renewal_at(window, now=)

Errors: ``AcmeError`` subclasses with ``step``, ``code``, ``detail``, ``problem``
(see ``app.acme.errors``); DNS providers raise ``app.acme.dns.DnsError`` subclasses.

The lead's modules (models, repository, service, router, schemas) sit beside these; nothing here
imports them.
"""

from app.acme.ari import (
    RenewalWindow,
    ari_cert_id,
    choose_renewal_at,
    default_renewal_at,
    renewal_info,
)
from app.acme.client import make_client, register_or_load_account
from app.acme.errors import (
    AccountError,
    AcmeError,
    DnsUpdateError,
    DownloadError,
    FinalizationError,
    HttpPublishError,
    OrderError,
    PropagationError,
    RenewalInfoError,
    ValidationError,
)
from app.acme.keys import KEY_TYPES, generate_private_key, make_csr
from app.acme.order import IssuedCertificate, issue
from app.acme.solvers import ChallengeSolver, ChallengeTask, Dns01Solver, Http01Solver

__all__ = [
    "KEY_TYPES",
    "AccountError",
    "AcmeError",
    "ChallengeSolver",
    "ChallengeTask",
    "Dns01Solver",
    "DnsUpdateError",
    "DownloadError",
    "FinalizationError",
    "Http01Solver",
    "HttpPublishError",
    "IssuedCertificate",
    "OrderError",
    "PropagationError",
    "RenewalInfoError",
    "RenewalWindow",
    "ValidationError",
    "ari_cert_id",
    "choose_renewal_at",
    "default_renewal_at",
    "generate_private_key",
    "issue",
    "make_client",
    "make_csr",
    "register_or_load_account",
    "renewal_info",
]
