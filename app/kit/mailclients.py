"""What mail client autoconfiguration advertises besides the host name: pure constants.

Shared by the controller (the TLS status says what is advertised) and the agent (its nginx
serves it), so the two cannot disagree. The order is the order of preference: RFC 8314
section 3 asks clients to prefer implicit TLS (IMAP 993, POP3 995, submission 465) over
STARTTLS (143, 110, 587), so every format lists implicit TLS first and STARTTLS second.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.kit.coverage import covers


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "imap" | "pop3" | "smtp" (submission)
    port: int
    security: str  # "tls": implicit TLS (RFC 8314); "starttls": second choice


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("imap", 993, "tls"),
    Endpoint("imap", 143, "starttls"),
    Endpoint("pop3", 995, "tls"),
    Endpoint("pop3", 110, "starttls"),
    Endpoint("smtp", 465, "tls"),
    Endpoint("smtp", 587, "starttls"),
)

AUTOCONFIG_LABELS = ("autoconfig", "autodiscover")
"""The names clients look up: Thunderbird ``autoconfig.<d>``, Outlook ``autodiscover.<d>``."""


def autoconfig_names(domain: str) -> list[str]:
    """``autoconfig.<d>`` and ``autodiscover.<d>``: served with the domain's webmail certificate."""
    return [f"{label}.{domain}" for label in AUTOCONFIG_LABELS]


def with_autoconfig_names(names: list[str], domains: list[str]) -> list[str]:
    """``names`` plus ``autoconfig.<d>`` and ``autodiscover.<d>`` of each of ``domains`` that no
    name already covers (``*.<d>`` does: RFC 9525 wildcards cover one label)."""
    out = list(names)
    for domain in domains:
        out += [name for name in autoconfig_names(domain) if not covers(out, name)]
    return out
