"""Verification by handshake: after a change, each local port must serve the expected certificate.

A daemon's own tools cannot be trusted to report a failed reload (``doveadm reload`` exits 0
either way, Postfix restarts smtpd lazily), so the agent connects like a client would, for each
bound SNI name, for no SNI, and for an unknown name, and compares fingerprints. HTTPS is also
probed with the server's own host name, which gets the webmail default (unless a webmail name
of the same spelling is bound): browsers send it when they open the server by its name.

Reloads are asynchronous, so each probe is retried until it matches or ``timeout`` passes.
At thousands of names a full sweep would take minutes (about 7 ms per handshake per port, and
more for STARTTLS), so the sample is bounded: every name whose certificate changed in this
generation comes first (those are what the change could have broken), then a few stable names,
capped at ``sample`` names per port. The cap also bounds the changed names; the no-SNI and
unknown-name probes are always made.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from dataclasses import dataclass

from app.agent.backends.base import Backend, View
from app.agent.probe import ProbeError, served_fingerprint
from app.kit.names import is_canonical

UNKNOWN_NAME = "certpost-unknown.invalid"


@dataclass(frozen=True)
class Probe:
    daemon: str
    host: str
    port: int
    protocol: str
    sni: str | None
    expected: str
    service: str = ""  # "mail" | "webmail"
    name: str | None = None  # the bound name probed (None: the no-SNI and unknown-name probes)

    def as_dict(self, served: str | None = None) -> dict:
        return {
            "port": self.port,
            "protocol": self.protocol,
            "sni": self.sni,
            "fingerprint": served or self.expected,
        }


def _probeable(hostname: str) -> bool:
    """A host name that can be sent as SNI (RFC 6066 section 3: a DNS name, not an address)."""
    return bool(hostname) and is_canonical(hostname) and not hostname.replace(".", "").isdigit()


def probe_name(name: str) -> str:
    """A concrete name to send for a binding; ``*.a.test`` is probed as ``certpost-probe.a.test``."""
    return "certpost-probe" + name[1:] if name.startswith("*.") else name


def sample_names(
    names: dict[str, str],
    previous: dict[str, str],
    default: str,
    limit: int,
    changed: set[str] | frozenset[str] | None = None,
    keys: tuple[object, object] | None = None,
) -> list[tuple[str, str]]:
    """(name, expected fingerprint) pairs to probe: changed and removed names first, then others.

    ``changed``, when known, holds every name whose entry may differ between ``previous`` and
    ``names`` (a delta's names): the sample is then found from those alone. ``keys`` is
    (a key naming ``names``, a key naming ``previous`` or None): see :func:`_smallest`.
    """
    if changed is None:
        expected = dict(names)
        for removed in previous.keys() - names.keys():
            if not _under_wildcard(removed, names):
                expected[removed] = default  # a removed name must fall back to the default
        # Without a Python pass over every name: the pairs that differ (a set operation in C),
        # the removed names, and the first stable names in order (heapq, not a sort of 10,000).
        touched = {n for n, _ in expected.items() ^ previous.items()} | (expected.keys() - names.keys())
        extra = expected.keys() - names.keys()
    else:
        extra_map: dict[str, str] = {}
        touched = set()
        for n in changed:
            now, before = names.get(n), previous.get(n)
            if now is None:
                if before is None:
                    continue
                touched.add(n)
                if not _under_wildcard(n, names):
                    extra_map[n] = default
            elif now != before:
                touched.add(n)
        extra = extra_map.keys()
        expected = _Overlay(names, extra_map)
    changed_names = sorted(n for n in touched if n in expected)
    room = max(limit - len(changed_names), 0)
    if keys is not None and (changed is None or any((n in names) != (n in previous) for n in changed)):
        keys = (keys[0], None)  # names were (or may have been) added or removed
    pool = _smallest(names, room + len(changed_names), *(keys or (None, None))) + list(extra)
    stable = [n for n in heapq.nsmallest(room + len(changed_names), pool) if n not in touched][:room]
    chosen = (changed_names + stable)[:limit]
    return [(n, expected[n]) for n in chosen]


class _Overlay:
    """``names`` with a few more entries, without copying ``names``."""

    def __init__(self, names: dict[str, str], extra: dict[str, str]) -> None:
        self.names, self.extra = names, extra

    def __contains__(self, name: str) -> bool:
        return name in self.names or name in self.extra

    def __getitem__(self, name: str) -> str:
        value = self.names.get(name)
        return self.extra[name] if value is None else value


# (the names, how many smallest are remembered, the smallest, keys of maps with these names)
_SMALLEST: list[tuple[frozenset[str], int, list[str], set]] = []


def _smallest(names: dict[str, str], count: int, key=None, same_as=None) -> list[str]:
    """The ``count`` smallest names in order, remembered while the set of names stays the same
    (a certificate change keeps it): comparing the sets runs in C, finding them again would be
    a Python pass over every name. ``key`` names the map ``names`` (a view's token and the
    service); ``same_as`` another map known to have the same names (the previous view's, when
    a delta only changed certificates): then not even the sets are compared."""
    for known, size, first, keys in _SMALLEST:
        if size >= count and key is not None and (key in keys or (same_as is not None and same_as in keys)):
            _remember(keys, key)
            return first[:count]
    for known, size, first, keys in _SMALLEST:
        if size >= count and len(known) == len(names) and known == names.keys():
            _remember(keys, key)
            return first[:count]
    first = heapq.nsmallest(count, names)
    _SMALLEST.insert(0, (frozenset(names), count, first, set()))
    _remember(_SMALLEST[0][3], key)
    del _SMALLEST[8:]
    return first


def _remember(keys: set, key) -> None:
    if key is not None:
        if len(keys) >= 64:  # one key per change: the older ones are not asked for again
            keys.clear()
        keys.add(key)


def _under_wildcard(name: str, names: dict[str, str]) -> bool:
    """True when a bound ``*.<parent>`` covers ``name``: a removed name then falls back to the
    wildcard's certificate, not the default (Postfix and Courier at any depth, Dovecot and nginx
    one label down), so it is not probed as a removed name."""
    labels = name.split(".")
    return any("*." + ".".join(labels[i:]) in names for i in range(1, len(labels)))


def plan(backends: list[Backend], view: View, previous: View | None, limit: int) -> list[Probe]:
    probes: list[Probe] = []
    samples: dict[tuple[str, bool], list[tuple[str, str]]] = {}
    for backend in backends:
        service = "mail" if backend.serves_mail() else "webmail"
        if backend.serves_mail():
            default, names, before = (
                view.server_certificate,
                view.mail,
                previous.mail if previous else {},
            )
        else:
            default, names, before = (
                view.webmail_default,
                view.webmail,
                previous.webmail if previous else {},
            )
        per_name = backend.per_name_sni()
        if not per_name:
            # Every bound name gets the default here: probe a sample of them expecting it.
            names = dict.fromkeys(names, default)
            before = dict.fromkeys(before, default)
        picks = samples.get((service, per_name))
        if picks is None:
            # A delta's names, when ``view`` was made from ``previous`` by them (app.agent.service).
            changed = view.changes_since(previous.token, service) if previous else None
            keys = ((view.token, service, per_name), (previous.token, service, per_name)) if previous else None
            picks = samples[(service, per_name)] = sample_names(names, before, default, limit, changed, keys)
        unbound = [(None, default), (UNKNOWN_NAME, default)]
        if not backend.serves_mail() and _probeable(view.server_hostname):
            unbound.append((view.server_hostname, names.get(view.server_hostname, default)))
        for target in backend.verify_targets():
            for sni, fp in [*unbound, *picks]:
                # The no-SNI, unknown-name and host-name probes are server-wide: a failure
                # there is nobody's binding (app.agent.isolation.verify_culprits).
                bound = sni if (sni, fp) in picks else None
                probes.append(
                    Probe(
                        backend.name,
                        target.host,
                        target.port,
                        target.protocol,
                        probe_name(sni) if sni else sni,
                        fp,
                        service,
                        bound,
                    )
                )
    return probes


async def _probe_until(
    probe: Probe, deadline: float, limiter: asyncio.Semaphore
) -> tuple[Probe, str | None, str]:
    """(probe, served fingerprint or None, last error) after retrying until the deadline."""
    delay, served, error = 0.05, None, ""
    while True:
        async with limiter:
            try:
                served = await asyncio.to_thread(
                    served_fingerprint, probe.host, probe.port, probe.protocol, probe.sni, timeout=3
                )
                error = (
                    ""
                    if served == probe.expected
                    else f"served {served}, expected {probe.expected}"
                )
            except ProbeError as exc:
                served, error = None, str(exc)
        if not error or time.monotonic() >= deadline:
            return probe, served, error
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def probe_all(
    probes: list[Probe], timeout: float, concurrency: int = 8
) -> list[tuple[Probe, str | None, str]]:
    """Run every probe concurrently: (probe, served fingerprint or None, error or "") each."""
    deadline = time.monotonic() + timeout
    limiter = asyncio.Semaphore(concurrency)
    return list(await asyncio.gather(*(_probe_until(p, deadline, limiter) for p in probes)))


async def run_probes(
    probes: list[Probe], timeout: float, concurrency: int = 8
) -> tuple[list[dict], list[tuple[Probe, str]]]:
    """Run every probe concurrently; return (verified entries, failures with their error)."""
    results = await probe_all(probes, timeout, concurrency)
    verified = [p.as_dict(served) for p, served, error in results if not error]
    failures = [(p, error) for p, _, error in results if error]
    return verified, failures
