"""The controller's metrics: request latency by route, the process, and the database figures.

One :class:`ControllerMetrics` per application (``create_app`` makes it; nothing at import, no
global registry, so two apps in one test process do not share series). Two registries:

- ``live``: what this process measures as it runs: ``certpost_http_request_duration_seconds``
  by method, route template and status (fed by :class:`app.kit.requestlog.RequestLog`), the
  standard ``process_*`` and ``python_*`` collectors, and ``certpost_metrics_database_up``;
- the database figures (:mod:`app.metrics.snapshot`): read at scrape time by a few aggregate
  statements (:class:`app.metrics.repository.MetricsRepository`), rendered to text in a worker
  thread (100,000 certificates are about 20 MB of text and seconds of CPU, which must not
  stall the event loop), and that text kept for ``CERTPOST_METRICS_CACHE_SECONDS``: two
  Prometheus servers scraping, or a scrape retried, do not read the database twice.

The worker's outcomes (orders, renewals, deliveries, webhook deliveries) are read from the
database rather than counted in memory, so they are right whichever process runs the worker
(``certpost serve`` or separate ``certpost worker`` processes, which serve no HTTP).
If the database is away, the last figures are served again (their age shows in
``certpost_metrics_snapshot_timestamp_seconds``) and ``certpost_metrics_database_up`` is 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector

from app.domains.tls_rows import DomainTlsRepository
from app.kit.time import utc_now
from app.metrics.repository import MetricsRepository
from app.metrics.snapshot import Snapshot, families
from app.outage import is_database_outage

log = logging.getLogger("certpost.metrics")

# Seconds; from a cached read (a few ms) to a slow list or upload, and a stalled request.
REFRESH_WAIT = 5.0  # seconds a scrape waits for fresh figures before it gets the previous ones
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


async def read_snapshot(sessionmaker) -> Snapshot:
    """The database figures, in one read-only transaction (one consistent view on PostgreSQL)."""
    started = time.perf_counter()
    now = utc_now()
    async with sessionmaker() as session:
        repo = MetricsRepository(session)
        pruned = await repo.retention_totals()
        return Snapshot(
            taken_at=now,
            read_seconds=0.0,
            certificates=await repo.certificates_in_use(),
            renewals=await repo.renewal_counts(),
            failing_renewals=await repo.failing_renewals(),
            orders=await repo.order_counts(),
            warnings=await DomainTlsRepository(session).warning_counts(now),
            servers=await repo.servers(),
            webhook_deliveries=await repo.webhook_delivery_counts(pruned),
            pruned=pruned,
        ).timed(time.perf_counter() - started)


class _Families:
    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def collect(self):
        return families(self.snapshot)


def render_snapshot(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(snapshot))
    return generate_latest(registry)


class ControllerMetrics:
    def __init__(self, cache_seconds: float = 60.0) -> None:
        self.cache_seconds = cache_seconds
        self.live = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.live)
        PlatformCollector(registry=self.live)
        GCCollector(registry=self.live)
        self.http = Histogram(
            "certpost_http_request_duration_seconds",
            "Time to answer an API request, by method, route template and status.",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.live,
        )
        self.database_up = Gauge("certpost_metrics_database_up",
                                 "1 when the last scrape could read the database figures, else 0.",
                                 registry=self.live)
        self._text = b""
        self._read_at = float("-inf")
        self._refresh: asyncio.Task | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http.labels(method, route, str(status)).observe(seconds)

    async def render(self, sessionmaker_of: Callable) -> bytes:
        """The exposition text; ``sessionmaker_of()`` gives the application's sessionmaker (read
        at scrape time: the lifespan builds it after the middleware exists).

        Figures older than ``cache_seconds`` are read again, by one refresh at a time however
        many scrapes arrive. A scrape waits for it up to ``REFRESH_WAIT`` seconds, then gets the
        previous figures (their age is in ``certpost_metrics_snapshot_timestamp_seconds``) while
        the refresh finishes for the next one: at 100,000 certificates on a loaded machine a
        read takes seconds (docs/performance.md, section 13), and Prometheus gives up on a
        scrape after 10 s by default. The first scrape waits for its figures."""
        if self._refresh is None and time.monotonic() - self._read_at >= self.cache_seconds:
            self._refresh = asyncio.create_task(self._read(sessionmaker_of()), name="certpost-metrics-refresh")
        if self._refresh is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._refresh), None if not self._text else REFRESH_WAIT)
            except TimeoutError:
                pass
            finally:
                if self._refresh is not None and self._refresh.done():
                    task, self._refresh = self._refresh, None
                    task.result()  # a bug surfaces here (an outage was handled inside)
        return self._text + generate_latest(self.live)

    async def _read(self, sessionmaker) -> None:
        try:
            snapshot = await read_snapshot(sessionmaker)
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            log.warning("metrics: cannot read the database figures (%s)", type(exc).__name__)
            self.database_up.set(0)
            return
        self._text = await asyncio.to_thread(render_snapshot, snapshot)
        self._read_at = time.monotonic()
        self.database_up.set(1)
