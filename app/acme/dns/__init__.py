"""DNS providers for dns-01 (RFC 8555 §8.4): the interface, RFC 2136 updates, propagation checks."""

from app.acme.dns.base import (
    DnsAuthRejected,
    DnsCnameDangling,
    DnsCnameLoop,
    DnsCnameNotAllowed,
    DnsError,
    DnsPropagationTimeout,
    DnsProvider,
    DnsTsigRejected,
    DnsUnreachable,
    DnsUpdateFailed,
    DnsUpdateRefused,
    DnsZoneNotFound,
    Nameserver,
)
from app.acme.dns.propagation import authoritative_nameservers, query_txt, wait_for_txt
from app.acme.dns.rfc2136 import Rfc2136Provider

__all__ = [
    "DnsAuthRejected",
    "DnsCnameDangling",
    "DnsCnameLoop",
    "DnsCnameNotAllowed",
    "DnsError",
    "DnsPropagationTimeout",
    "DnsProvider",
    "DnsTsigRejected",
    "DnsUnreachable",
    "DnsUpdateFailed",
    "DnsUpdateRefused",
    "DnsZoneNotFound",
    "Nameserver",
    "Rfc2136Provider",
    "authoritative_nameservers",
    "query_txt",
    "wait_for_txt",
]
