"""dns-01 records through RFC 2136 dynamic updates signed with TSIG (RFC 8945).

This is the provider for hosting setups that run their own primaries (BIND, Knot, PowerDNS…):
an UPDATE message over TCP, signed with a shared HMAC key, adds or deletes exactly one TXT RR
(RFC 2136 §2.5.1 "Add To An RRset", §2.5.4 "Delete An RR From An RRset"). Deleting an RR that is
absent is a no-op for the server (§3.4.2.4), which keeps cleanup idempotent.

The zone to update is found by asking the configured server for the SOA of the name and of each
parent in turn (RFC 2136 §4: the zone section names the enclosing zone), unless it is configured.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.tsigkeyring
import dns.update

from app.acme.dns.base import (
    DnsProvider,
    DnsTsigRejected,
    DnsUnreachable,
    DnsUpdateFailed,
    DnsUpdateRefused,
    DnsZoneNotFound,
    Nameserver,
)
from app.kit.outbound import OutboundRefused
from app.outbound import OutboundGuard

log = logging.getLogger("certpost.acme.dns")

DEFAULT_TTL = 60
"""Short: the record lives only for the validation; resolvers must not keep stale values long."""

_REFUSED_RCODES = {dns.rcode.REFUSED, dns.rcode.NOTZONE}
_TSIG_ERRORS = {dns.rcode.BADSIG, dns.rcode.BADKEY, dns.rcode.BADTIME}


def _txt_rdata(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()])


def _absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(name.rstrip(".") + ".")


class Rfc2136Provider(DnsProvider):
    """Adds/deletes single TXT values on one primary server with a TSIG key.

    `propagation_nameservers` overrides which servers `wait_for_propagation` checks; by default
    it is the configured server itself (right for a primary that is also the public authority;
    give the public NS set, e.g. from `authoritative_nameservers()`, for hidden primaries).

    `guard` (an `app.outbound.OutboundGuard`, given for a customer's provider) checks the server
    and the propagation servers before any packet leaves; a refusal is `DnsUnreachable`.
    """

    kind = "rfc2136"

    def __init__(
        self,
        server: str,
        port: int = 53,
        *,
        key_name: str,
        key_secret: str,
        key_algorithm: str = "hmac-sha256",
        zone: str | None = None,
        timeout: float = 10.0,
        ttl: int = DEFAULT_TTL,
        propagation_nameservers: Sequence[Nameserver] | None = None,
        guard: OutboundGuard | None = None,
    ) -> None:
        self.server = server
        self.port = port
        self.key_name = key_name
        self.key_algorithm = key_algorithm
        self.zone = zone
        self.timeout = timeout
        self.ttl = ttl
        self.propagation_nameservers = (
            list(propagation_nameservers) if propagation_nameservers is not None else None
        )
        self._keyname = _absolute(key_name)
        self._keyring = {self._keyname: dns.tsig.Key(self._keyname, key_secret, key_algorithm)}
        self.guard = guard
        self._address: str | None = None
        self._zones: dict[dns.name.Name, dns.name.Name] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return (
            f"Rfc2136Provider(server={self.server!r}, port={self.port}, key_name={self.key_name!r})"
        )

    # -- addressing -------------------------------------------------------------------------

    def _server_address(self) -> str:
        """dnspython needs an IP address; resolve a host name once, and keep that address.

        With a `guard` (a customer's provider), every address of the name is checked and the
        connection goes to a checked one: re-resolving later would let the name rebind.
        """
        if self._address is None:
            if self.guard is not None:
                try:
                    self._address = str(self.guard.resolve(self.server, self.port)[0])
                except OutboundRefused as exc:
                    raise DnsUnreachable(
                        f"outbound guard refused the DNS server: {exc.reason}"
                    ) from None
                return self._address
            try:
                infos = socket.getaddrinfo(self.server, self.port, proto=socket.IPPROTO_TCP)
            except OSError as exc:
                raise DnsUnreachable(f"cannot resolve DNS server {self.server}: {exc}") from None
            self._address = infos[0][4][0]
        return self._address

    def nameservers_to_check(self, fqdn: str) -> Sequence[Nameserver]:
        if self.propagation_nameservers is not None:
            if self.guard is not None:
                for host, port in self.propagation_nameservers:
                    try:
                        self.guard.policy.check(host, port)
                    except OutboundRefused as exc:
                        raise DnsUnreachable(
                            f"outbound guard refused a propagation name server: {exc.reason}",
                            fqdn=fqdn,
                        ) from None
            return self.propagation_nameservers
        return [(self._server_address(), self.port)]

    # -- zone discovery ---------------------------------------------------------------------

    def find_zone(self, fqdn: str) -> str:
        """The zone (without trailing dot) that holds `fqdn`, per the configured server's SOA."""
        if self.zone:
            return self.zone.rstrip(".")
        name = _absolute(fqdn)
        with self._lock:
            cached = self._zones.get(name)
        if cached is None:
            cached = self._discover_zone(name)
            with self._lock:
                self._zones[name] = cached
        return cached.to_text(omit_final_dot=True)

    def _discover_zone(self, name: dns.name.Name) -> dns.name.Name:
        candidate = name
        while candidate != dns.name.root:
            response = self._query(candidate, dns.rdatatype.SOA)
            rcode = response.rcode()
            if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                for rrset in response.answer:
                    if rrset.rdtype == dns.rdatatype.SOA and rrset.name == candidate:
                        return candidate
                # NXDOMAIN/NODATA from an authoritative server: the SOA in the authority
                # section names the enclosing zone (RFC 2308 §2).
                if response.flags & dns.flags.AA:
                    for rrset in response.authority:
                        if rrset.rdtype == dns.rdatatype.SOA and name.is_subdomain(rrset.name):
                            return rrset.name
            candidate = candidate.parent()
        raise DnsZoneNotFound(
            f"{self.server}:{self.port} is authoritative for no zone containing {name}",
            fqdn=name.to_text(omit_final_dot=True),
        )

    def _query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD
        try:
            response, _ = dns.query.udp_with_fallback(
                query, self._server_address(), timeout=self.timeout, port=self.port
            )
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            raise DnsUnreachable(
                f"DNS server {self.server}:{self.port} did not answer: {exc!r}"
            ) from None
        return response

    # -- updates ----------------------------------------------------------------------------

    def add_txt(self, fqdn: str, value: str) -> None:
        update = self._update(fqdn)
        update.add(_absolute(fqdn), self.ttl, _txt_rdata(value))
        self._send(update, fqdn, "add")

    def delete_txt(self, fqdn: str, value: str) -> None:
        update = self._update(fqdn)
        update.delete(_absolute(fqdn), _txt_rdata(value))
        self._send(update, fqdn, "delete")

    def add_txt_values(self, fqdn: str, values: Sequence[str]) -> None:
        """All values in one UPDATE (RFC 2136 §2.5: an update section holds any number of RRs):
        one TCP exchange and one zone change on the server instead of one per value."""
        update = self._update(fqdn)
        for value in values:
            update.add(_absolute(fqdn), self.ttl, _txt_rdata(value))
        self._send(update, fqdn, "add")

    def delete_txt_values(self, fqdn: str, values: Sequence[str]) -> None:
        update = self._update(fqdn)
        for value in values:
            update.delete(_absolute(fqdn), _txt_rdata(value))
        self._send(update, fqdn, "delete")

    def _update(self, fqdn: str) -> dns.update.UpdateMessage:
        zone = self.find_zone(fqdn)
        return dns.update.UpdateMessage(
            _absolute(zone), keyring=self._keyring, keyname=self._keyname
        )

    def _send(self, update: dns.update.UpdateMessage, fqdn: str, action: str) -> None:
        where = f"{self.server}:{self.port}"
        try:
            response = dns.query.tcp(
                update, self._server_address(), timeout=self.timeout, port=self.port
            )
        except (dns.tsig.PeerBadSignature, dns.tsig.PeerBadKey, dns.tsig.PeerBadTime) as exc:
            raise DnsTsigRejected(
                f"{where} rejected the TSIG signature of key {self.key_name} "
                f"({type(exc).__name__})",
                fqdn=fqdn,
            ) from None
        except dns.tsig.PeerError as exc:
            raise DnsTsigRejected(
                f"{where} rejected TSIG: {type(exc).__name__}", fqdn=fqdn
            ) from None
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            # Timeouts, resets, and answers that are not DNS at all (FormError, ShortHeader): to
            # the caller all mean "no DNS server there"; the class names stay in the detail.
            raise DnsUnreachable(f"{where} did not answer the update: {exc!r}", fqdn=fqdn) from None
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            log.info("rfc2136 %s TXT %s via %s", action, fqdn, where)
            return
        text = dns.rcode.to_text(rcode)
        if rcode == dns.rcode.NOTAUTH and response.tsig_error in _TSIG_ERRORS:
            # RFC 8945 §5.3.2: NOTAUTH plus a TSIG error answers a request whose MAC failed.
            raise DnsTsigRejected(
                f"{where} answered NOTAUTH/{dns.rcode.to_text(response.tsig_error)} "
                f"for key {self.key_name}",
                fqdn=fqdn,
            )
        if rcode == dns.rcode.NOTAUTH:
            # RFC 2136 §2.2: NOTAUTH without a TSIG error: not authoritative for the zone.
            raise DnsUpdateRefused(
                f"{where} is not authoritative for the zone of {fqdn} (NOTAUTH)", fqdn=fqdn
            )
        if rcode in _REFUSED_RCODES:
            raise DnsUpdateRefused(f"{where} refused the update of {fqdn} ({text})", fqdn=fqdn)
        raise DnsUpdateFailed(f"{where} answered {text} to the update of {fqdn}", fqdn=fqdn)
