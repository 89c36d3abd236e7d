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

# Loaded on first use (PEP 562): the protocol layer pulls in requests, acme, josepy, pyOpenSSL
# and dnspython (about 9 MB), which `certpost serve` needs only once an order runs.
_EXPORTS = {
    "AccountError": "app.acme.errors",
    "AcmeError": "app.acme.errors",
    "ChallengeSolver": "app.acme.solvers",
    "ChallengeTask": "app.acme.solvers",
    "Dns01Solver": "app.acme.solvers",
    "DnsUpdateError": "app.acme.errors",
    "DownloadError": "app.acme.errors",
    "FinalizationError": "app.acme.errors",
    "Http01Solver": "app.acme.solvers",
    "HttpPublishError": "app.acme.errors",
    "IssuedCertificate": "app.acme.order",
    "KEY_TYPES": "app.acme.keys",
    "OrderError": "app.acme.errors",
    "PropagationError": "app.acme.errors",
    "RenewalInfoError": "app.acme.errors",
    "RenewalWindow": "app.acme.ari",
    "ValidationError": "app.acme.errors",
    "ari_cert_id": "app.acme.ari",
    "choose_renewal_at": "app.acme.ari",
    "default_renewal_at": "app.acme.ari",
    "generate_private_key": "app.acme.keys",
    "issue": "app.acme.order",
    "make_client": "app.acme.client",
    "make_csr": "app.acme.keys",
    "register_or_load_account": "app.acme.client",
    "renewal_info": "app.acme.ari",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'app.acme' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
