"""Drift detection: does every port still serve what the agent last applied?

After an apply the agent proves by handshake that the daemons serve the new certificates
(``app.agent.verify``). Nothing proves it afterwards: an administrator who copies another file
over a bundle and reloads, a package upgrade that rewrites a daemon's configuration, a restore
from a backup all change what clients are served without telling anyone. So every
``drift_interval`` seconds the agent probes again, the same way, and remembers what each port
served.

What one round probes (``drift_plan``, pure): on every verify port, the no-SNI probe (the
default certificate) and a window of ``drift_sample`` bound names. The windows walk the sorted
names round after round, so every name is probed once per cycle of ``ceil(names / sample)``
rounds; names that drifted are probed again every round until they match. A round costs
``ports × (sample + 1 + drifted)`` handshakes (about 7 ms each, more for STARTTLS; 8 at a time).

What is remembered (``Observations``): the latest result per (service, name, daemon, port),
each with a sequence number. The controller reads them with ``GET /v1/observations?after=SEQ``
over the channel it already uses for pushes (pinned TLS, signed requests): the agent needs no
controller address and no key of its own, and the controller decides the pace.

Repair: a push (any new generation) rewrites the bundle copies of the drifted names on their
daemons and reloads the daemons that drifted even when no file changed
(``Pipeline.repair``); the drifted keys are probed again right after the apply.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from app.agent.backends.base import Backend, View
from app.agent.metrics import AgentMetrics
from app.agent.verify import Probe, probe_all, probe_name

log = logging.getLogger("certpost.agent")

DRIFT_PROBE_TIMEOUT = 1.0
"""A mismatch is probed again for up to a second before it is recorded: a reload someone else
started a moment ago should not count as drift."""


@dataclass(frozen=True)
class Key:
    service: str
    name: str | None  # None: the no-SNI probe (the daemon's default certificate)
    daemon: str
    port: int


@dataclass
class Observation:
    seq: int
    at: str
    protocol: str
    sni: str | None
    expected: str
    served: str | None
    error: str | None

    @property
    def drifted(self) -> bool:
        return self.served != self.expected


def _window(names: list[str], start: int, size: int) -> list[str]:
    """``size`` names from ``start``, wrapping around (each name at most once)."""
    if not names or size <= 0:
        return []
    if size >= len(names):
        return list(names)
    start %= len(names)
    return (names + names)[start:start + size]


def drift_plan(
    backends: list[Backend], view: View, round_no: int, sample: int, drifted: set[Key]
) -> list[Probe]:
    """The probes of round ``round_no`` (0, 1, 2, …): per port, no SNI, the round's window of
    names and every name that was drifted when last probed."""
    probes: list[Probe] = []
    for backend in backends:
        service = "mail" if backend.serves_mail() else "webmail"
        default, bound = (
            (view.server_certificate, view.mail) if service == "mail" else (view.webmail_default, view.webmail)
        )
        ordered = sorted(bound)
        window = _window(ordered, round_no * sample, sample)
        for target in backend.verify_targets():
            again = sorted(
                k.name for k in drifted
                if k.daemon == backend.name and k.port == target.port and k.name in bound
            )
            chosen = [None, *dict.fromkeys([*window, *again])]
            for name in chosen:
                expected = default if name is None else bound[name]
                sni = None if name is None else probe_name(name)
                probes.append(Probe(backend.name, target.host, target.port, target.protocol, sni, expected,
                                    service, name))
    return probes


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Observations:
    """The latest observation per key, each numbered so the controller reads only what is new.

    ``epoch`` changes with every agent process: sequence numbers restart with it, and a
    controller that sees another epoch reads everything again.
    """

    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    latest: dict[Key, Observation] = field(default_factory=dict)
    rounds: int = 0
    last_round_at: str | None = None

    def record(self, probe: Probe, served: str | None, error: str) -> Observation:
        self.seq += 1
        key = Key(probe.service, probe.name, probe.daemon, probe.port)
        obs = Observation(self.seq, _now(), probe.protocol, probe.sni, probe.expected, served,
                          (error or None) if served is None else None)
        self.latest[key] = obs
        return obs

    def forget_unbound(self, view: View) -> None:
        """Drop observations of names no longer bound: they describe nothing the agent serves."""
        for key in [k for k in self.latest if k.name is not None]:
            names = view.mail if key.service == "mail" else view.webmail
            if key.name not in names:
                del self.latest[key]

    def drifted(self) -> set[Key]:
        return {k for k, o in self.latest.items() if o.drifted}

    def drift_by_port(self) -> dict[tuple[str, int], int]:
        """Drifted keys per (daemon, port): what the agent's drift gauge shows."""
        counts: dict[tuple[str, int], int] = {}
        for key, obs in self.latest.items():
            counts.setdefault((key.daemon, key.port), 0)
            if obs.drifted:
                counts[(key.daemon, key.port)] += 1
        return counts

    def page(self, epoch: str | None, after: int, limit: int) -> dict:
        """Observations newer than ``after`` (all of them when ``epoch`` is not this one's)."""
        start = after if epoch == self.epoch else 0
        newer = sorted(((o.seq, k, o) for k, o in self.latest.items() if o.seq > start), key=lambda t: t[0])
        chosen = newer[:limit]
        items = [
            {"seq": o.seq, "service": k.service, "name": k.name, "daemon": k.daemon, "port": k.port,
             "protocol": o.protocol, "sni": o.sni, "expected": o.expected, "served": o.served,
             "error": o.error, "at": o.at}
            for _, k, o in chosen
        ]
        return {
            "epoch": self.epoch,
            "last_seq": chosen[-1][0] if chosen else max(start, 0),
            "more": len(newer) > len(chosen),
            "rounds": self.rounds,
            "last_round_at": self.last_round_at,
            "drifted": sum(1 for o in self.latest.values() if o.drifted),
            "observations": items,
        }


class DriftMonitor:
    """Runs the rounds; the agent's lock is held around each, so a round never sees an apply
    half done and an apply never waits for more than one round."""

    def __init__(self, backends: list[Backend], lock: asyncio.Lock, served: Callable[[], View | None],
                 interval: float, sample: int, metrics: AgentMetrics | None = None) -> None:
        """``served``: what the daemons should serve now (the applied document with its held-back
        names), None before anything was applied. ``metrics``: where the drift gauges are set."""
        self.metrics = metrics
        self.backends = backends
        self.lock = lock
        self.served = served
        self.interval = interval
        self.sample = sample
        self.observations = Observations()
        self.round_no = 0

    async def run_round(self) -> list[Observation]:
        async with self.lock:
            return await self._round()

    async def _round(self) -> list[Observation]:
        view = self.served()
        if view is None:
            return []
        self.observations.forget_unbound(view)
        probes = drift_plan(self.backends, view, self.round_no, self.sample, self.observations.drifted())
        self.round_no += 1
        out = await self._probe(probes)
        self.observations.rounds += 1
        self.observations.last_round_at = _now()
        self._drift_counted()
        return out

    def _drift_counted(self) -> None:
        """Called after every round and every re-check: the drift count per port is known here,
        and goes to the agent's drift gauges (``AgentMetrics.record_drift_check``): per (daemon,
        port), the names with an observation and the drifted ones among them."""
        if self.metrics is None:
            return
        checked = Counter((key.daemon, key.port) for key in self.observations.latest)
        for (daemon, port), drifted in self.observations.drift_by_port().items():
            self.metrics.record_drift_check(daemon=daemon, port=port, checked=checked[(daemon, port)],
                                            drifted=drifted)

    def repair_plan(self, keys: set[Key]) -> dict[str, set[str]]:
        """Daemon -> fingerprints its drifted probes expected (``Pipeline.repair``).

        Only probes that got a handshake with the wrong certificate: a port that answered
        nothing is a daemon down, which rewriting files does not mend, and forcing its reload
        would fail every push (every tenant's) until it is back."""
        plan: dict[str, set[str]] = {}
        for key in keys:
            obs = self.observations.latest.get(key)
            if obs is not None and obs.served is not None:
                plan.setdefault(key.daemon, set()).add(obs.expected)
        return plan

    async def recheck(self, keys: set[Key]) -> None:
        """Probe ``keys`` again against the applied document (after a push repaired them).
        The caller holds the agent's lock."""
        view = self.served()
        if view is None or not keys:
            return
        self.observations.forget_unbound(view)
        probes = [
            p for p in drift_plan(self.backends, view, 0, 0, keys)
            if Key(p.service, p.name, p.daemon, p.port) in keys
        ]
        await self._probe(probes)
        self._drift_counted()

    async def _probe(self, probes: list[Probe]) -> list[Observation]:
        results = await probe_all(probes, DRIFT_PROBE_TIMEOUT)
        return [self.observations.record(p, served, error) for p, served, error in results]

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken round must not end the schedule
                log.exception("drift round failed")
