"""What each domain keeps of the certificates it presents, so the TLS list sorts and filters by index.

The TLS list (app/domains/tls_list.py) sorts by the earlier ``notAfter`` of the two
certificates a domain presents (its binding's, else the server's default) and filters by the
reasons a client would warn. Computed from the certificates at query time, both read every
domain of the server (docs/performance.md, section 11). So each domain row keeps three facts,
all pure functions of what it presents and none of the moment:

- ``tls_soonest``: the earlier ``notAfter`` of the two (the expiry sort's key; "expired" for
  some service is exactly ``tls_soonest`` before the current second, ``kit.time.expired``);
- ``tls_latest_start``: the later ``notBefore`` (no service can be "not yet valid" unless it is
  after the current moment);
- ``tls_flags``: ``rules.identity_reasons`` of both services as bits (``FLAGS``): the name not
  covered, self-signed, untrusted by the stored trust verdict.

Time-dependent reasons are still decided at query time against ``now`` (tls_rows.py). The
facts are computed here by the same rules the rows are (``summarize``), and written by
``tls_upkeep`` on every change of what a domain presents.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from app.domains import rules
from app.domains.models import SERVICES

FLAGS = {reason: 1 << i for i, reason in enumerate(rules.IDENTITY_REASONS)}


class Summary(NamedTuple):
    soonest: datetime
    latest_start: datetime
    flags: int


def summarize(domain: str, presented: Mapping[str, rules.CertFacts]) -> Summary:
    """The facts a domain keeps, from the certificates each service presents."""
    flags = 0
    for service in SERVICES:
        for reason in rules.identity_reasons(presented[service], rules.service_hostname(service, domain)):
            flags |= FLAGS[reason]
    return Summary(min(presented[s].not_after for s in SERVICES), max(presented[s].not_before for s in SERVICES),
                   flags)
