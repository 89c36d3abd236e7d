"""Rules about dns-lexicon provider settings, as pure functions (no Lexicon import, no I/O).

Lexicon names every provider option after its command-line flag (``--auth-token`` →
``auth_token``); these rules read those names to tell credentials from plain options, and to keep
a customer's provider on its vendor's fixed API (app/acme/providers/lexicon.py applies them at
creation, app/acme/dns/lexicon.py again before each API session).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

CREDENTIAL_NAME = re.compile(r"(token|secret|pass|psw|key|credential|private)", re.IGNORECASE)
"""Option names that hold credentials in Lexicon's providers (`auth_token`, `auth_secret`,
`auth_password`, `auth_pass`, `auth_psw`, `auth_access_key`, `auth_consumer_key` …): a string
option so named may only be given as a write-only credential, never as a plain option that the
API would return. Names without these words (`auth_username`, `auth_entrypoint`, `zone_id`) are
plain options, unless the operator chooses to put them under `credentials`."""


PLATFORM_ONLY_PROVIDERS = frozenset({"auto", "ddns", "localzone"})
"""Lexicon providers that reach where their settings say rather than a vendor's fixed API
(`auto` follows the zone's NS records to any provider, `ddns` sends RFC 2136 to any host,
`localzone` writes files on the controller): the platform's providers may use them, a
customer's may not."""

_ADDRESS_OPTION = re.compile(r"(server|host|endpoint|url|file|path|ddns)", re.IGNORECASE)
_URL = re.compile(r"(?i)^[a-z][a-z0-9+.-]*://")
_FILE_REFERENCE = re.compile(r"(?i)^file:")
"""Lexicon's ``file::<path>`` convention (googleclouddns' ``auth_service_account_info``): the
provider opens that path on the controller, whatever the option is called."""
SELECTOR_OPTIONS = frozenset({"auth_entrypoint", "auth_region"})
_SELECTOR = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""A region or entry point is a short name that providers paste into their API's URL
(conoha: ``https://identity.{region}.conoha.io``): ``x@10.0.0.5:80/#`` there would make the
host 10.0.0.5. Only letters, digits, dot, dash and underscore are a name."""


def customer_refusal(provider: str, options: Mapping[str, Any]) -> str | None:
    """Why a customer's Lexicon provider may not have these settings, or None when it may.

    A customer's provider talks to its vendor's fixed API endpoints only. An option that names
    where to connect or what to read (a server, host, endpoint or URL, a file) is refused
    outright rather than checked by the outbound guard: the API libraries resolve names again
    and follow HTTP redirects, so a checked address could not be pinned. `auth_entrypoint`
    (OVH, Zonomi) and `auth_region` (Conoha, OCI) select among the vendor's own endpoints by
    name and stay allowed as plain names. A ``file::`` value is refused under any option name.
    """
    if provider in PLATFORM_ONLY_PROVIDERS:
        return f"the lexicon provider {provider} is for the platform's providers only"
    for name, value in options.items():
        if isinstance(value, str) and _FILE_REFERENCE.match(value):
            return f"option {name} names a file to read; only the platform's providers may do that"
        if name in SELECTOR_OPTIONS and isinstance(value, str) and value:
            if _SELECTOR.match(value):
                continue  # a region or entry point by name: among the vendor's own endpoints
            return f"option {name} must be a region or entry point name (letters, digits, . - _)"
        if _ADDRESS_OPTION.search(name) or (isinstance(value, str) and _URL.match(value)):
            return f"option {name} names where to connect or what to read; only the platform's providers may set it"
    return None
