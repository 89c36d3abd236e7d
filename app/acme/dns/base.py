"""The DNS provider interface used by the dns-01 solver, and its errors.

dns-01 (RFC 8555 §8.4) needs three things from a DNS provider: put a TXT value at
`_acme-challenge.<domain>`, take exactly that value away again, and know which name servers must
answer with it before the CA is told to look. A wildcard and its base name share one owner name,
so providers add and delete single values, never whole RRsets.

Exception tree (each class carries a stable ``code`` slug for the API and the order's last error)::

    DnsError                      dns_error
    ├── DnsTsigRejected           dns_tsig_rejected        wrong key or secret (RFC 8945 §5.3)
    ├── DnsUpdateRefused          dns_update_refused       REFUSED / NOTZONE / NOTAUTH-by-policy
    ├── DnsZoneNotFound           dns_zone_not_found       no zone found for the name
    ├── DnsUnreachable            dns_unreachable          timeout, connection refused, EOF, or
    │                                                      refused by the outbound guard
    ├── DnsAuthRejected           dns_auth_rejected        a DNS hosting API refused the credentials
    ├── DnsUpdateFailed           dns_update_failed        any other RCODE (SERVFAIL, …) or API error
    ├── DnsCnameLoop              dns_cname_loop           `_acme-challenge` CNAMEs loop or chain too long
    ├── DnsCnameDangling          dns_cname_dangling       a CNAME points where no configured server answers
    ├── DnsCnameNotAllowed        dns_cname_target_not_allowed  a customer's CNAME points where only the
    │                                                      platform's order provider could write
    └── DnsPropagationTimeout     dns_propagation_timeout  name servers never served the values
"""

from __future__ import annotations

import abc
from collections.abc import Sequence


class DnsError(Exception):
    """Base of every DNS provider failure; ``str(err)`` never contains key material."""

    code = "dns_error"

    def __init__(self, detail: str, *, fqdn: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fqdn = fqdn


class DnsTsigRejected(DnsError):
    """The server did not accept our TSIG signature (BADSIG/BADKEY/BADTIME, RFC 8945 §5.3)."""

    code = "dns_tsig_rejected"


class DnsUpdateRefused(DnsError):
    """The server refused the update: not authoritative for the zone, or policy forbids the key."""

    code = "dns_update_refused"


class DnsZoneNotFound(DnsError):
    code = "dns_zone_not_found"


class DnsUnreachable(DnsError):
    code = "dns_unreachable"


class DnsUpdateFailed(DnsError):
    code = "dns_update_failed"


class DnsAuthRejected(DnsError):
    """A DNS hosting API refused the credentials (HTTP 401/403 on authentication)."""

    code = "dns_auth_rejected"


class DnsCnameLoop(DnsError):
    """The `_acme-challenge` name's CNAME chain loops, or is longer than certpost follows."""

    code = "dns_cname_loop"


class DnsCnameDangling(DnsError):
    """A CNAME in the chain points at a name whose zone no configured name server answers for."""

    code = "dns_cname_dangling"


class DnsCnameNotAllowed(DnsError):
    """A customer's `_acme-challenge` CNAME points outside the zones the platform's provider
    declares: the platform's credentials write only where the platform offered (`zones`)."""

    code = "dns_cname_target_not_allowed"


class DnsPropagationTimeout(DnsError):
    code = "dns_propagation_timeout"


Nameserver = tuple[str, int]
"""(IP address, port) of a name server to query directly."""


class DnsProvider(abc.ABC):
    """Adds and removes single TXT values. Synchronous: the worker calls it in a thread."""

    kind: str = ""
    zones: tuple[str, ...] = ()
    """Zones this provider declares it can write (lower-case, no trailing dot). A delegated
    `_acme-challenge` CNAME whose target lies in one of them is written with this provider."""

    @abc.abstractmethod
    def add_txt(self, fqdn: str, value: str) -> None:
        """Add one TXT value at `fqdn`, keeping any values already there."""

    @abc.abstractmethod
    def delete_txt(self, fqdn: str, value: str) -> None:
        """Delete one TXT value at `fqdn`; deleting a value that is absent is not an error."""

    def add_txt_values(self, fqdn: str, values: Sequence[str]) -> None:
        """Add several TXT values at `fqdn` (a wildcard and its base name share one name);
        a provider that can do it in one request overrides this."""
        for value in values:
            self.add_txt(fqdn, value)

    def delete_txt_values(self, fqdn: str, values: Sequence[str]) -> None:
        for value in values:
            self.delete_txt(fqdn, value)

    @abc.abstractmethod
    def nameservers_to_check(self, fqdn: str) -> Sequence[Nameserver]:
        """The authoritative servers that must serve the values before the CA is asked to look."""

    def wait_for_propagation(
        self,
        fqdn: str,
        values: Sequence[str],
        *,
        timeout: float = 120.0,
        interval: float = 2.0,
    ) -> None:
        """Block until every server of `nameservers_to_check` serves all `values` at `fqdn`."""
        from app.acme.dns.propagation import wait_for_txt

        wait_for_txt(
            fqdn,
            values,
            nameservers=self.nameservers_to_check(fqdn),
            timeout=timeout,
            interval=interval,
        )
