"""Reading submitted material in worker processes, so that parsing cannot stall the API.

Loading a private key is the costly part of an upload: OpenSSL checks an RSA key's primes
(about 6 s of CPU for RSA-8192 here), and an encrypted key or a PKCS#12 file runs its KDF. The
``cryptography`` library (50.x) holds the GIL through these calls: measured with a 1 ms ticker
thread, the ticker stalls for the whole 6 s load (docs/performance.md). A thread pool would
therefore still freeze the event loop, so the reading runs in a small pool of *processes*
(spawned, not forked: the service has threads and open sockets). The parent only rebuilds the
result from DER, which costs microseconds.

The cheap refusals (key type and size from the certificate, iteration caps) run first, in the
API process, so material the rules refuse never queues for a worker. The workers run at a lower CPU priority (``NICENESS``) than the API. The pool is bounded twice: ``WORKERS`` processes (the cores there are), and at most
``QUEUE_LIMIT`` readings waiting; past that a request gets 503 ``material_busy`` at once rather
than a long queue. The caps of ``app.kit.keypolicy`` and ``app.kit.pbe`` bound the work of each
reading, so a hostile upload occupies one worker for seconds at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.certificates import material
from app.kit import x509 as kx
from app.kit.trust import TrustStore
from app.problems import AppError

WORKERS = max(1, min(2, os.cpu_count() or 1))
QUEUE_LIMIT = 32
NICENESS = 10


class MaterialBusy(AppError):
    """Every certificate-reading worker is busy (parsing, key derivation): retry after `Retry-After` seconds."""

    status, code, title = 503, "material_busy", "Too many certificates are being read; retry shortly"
    retry_after = 5


_TRUST: TrustStore | None = None  # one per worker process, from the parent's roots


def _init_worker(roots_der: list[bytes], parent: int) -> None:
    """Build the worker's trust store, and yield the CPU to the API process when both want it.

    ``nice`` 10 (setpriority(2)): with two cores and two readers busy, the scheduler still runs
    the event loop first, which is what keeps /healthz fast during hostile uploads.
    """
    global _TRUST
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    # ``parent`` is the pool's process, named by it: a worker still starting when that process
    # was killed is already an orphan here, and its own getppid() would name the adopter.
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()
    with warnings.catch_warnings():  # one Mozilla root has a non-positive serial (see TrustStore.load)
        warnings.simplefilter("ignore")
        _TRUST = TrustStore([x509.load_der_x509_certificate(d) for d in roots_der])


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """End this worker once the process that started it is gone.

    A pool's workers leave when the pool is shut down, but a ``certpost serve`` killed outright
    (SIGKILL, the OOM killer) shuts nothing down: its workers, each holding a trust store, were
    left running for good (the test suite's crash tests left a dozen). An orphan is adopted by
    another process, so the parent id changes (getppid(2)). Polled rather than
    ``prctl(PR_SET_PDEATHSIG)``, which fires when the *thread* that started the worker ends, and
    the pool is started from a worker thread (``_start``).
    """
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(0)


def _ready() -> bool:
    return _TRUST is not None


def _read_pem(certificate_pem, private_key_pem, chain_pem, passphrase) -> tuple:
    return material.from_pem(
        certificate_pem, private_key_pem, chain_pem=chain_pem, passphrase=passphrase, trust=_TRUST
    ).to_wire()


def _read_pkcs12(data: bytes, password: str | None) -> tuple:
    return material.from_pkcs12(data, password, trust=_TRUST).to_wire()


class MaterialReader:
    """``from_pem`` and ``from_pkcs12`` of ``material``, run in the worker processes."""

    def __init__(self, trust: TrustStore, workers: int = WORKERS, queue_limit: int = QUEUE_LIMIT):
        self._roots = [c.public_bytes(Encoding.DER) for c in trust.roots]
        self._workers = workers
        self._queue_limit = queue_limit
        self._pending = 0
        self._pool: ProcessPoolExecutor | None = None
        self._starting: asyncio.Future | None = None
        self._closed = False

    def _start(self) -> ProcessPoolExecutor:
        """Make the pool and every worker in it; blocks for a second or more, so never on the loop.

        ``ProcessPoolExecutor.submit`` starts a worker when none is idle, and starting one writes
        the preparation data into a pipe the new interpreter reads only once it has imported the
        main module: measured 1.2-1.3 s per worker, during which the submitting thread is blocked.
        Submitting one no-op per worker from this thread starts them all here.
        """
        pool = ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self._roots, os.getpid()),
        )
        for future in [pool.submit(_ready) for _ in range(self._workers)]:
            future.result()
        return pool

    async def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            if self._starting is None:
                self._starting = asyncio.ensure_future(asyncio.to_thread(self._start))
            starting = self._starting
            try:
                pool = await asyncio.shield(starting)
            finally:
                if starting.done() and self._starting is starting:
                    self._starting = None
            if self._closed:
                self._stop(pool)
                raise MaterialBusy("the service is shutting down")
            if self._pool is None:
                self._pool = pool
        return self._pool

    async def _run(self, precheck, fn, *args) -> material.Material:
        try:  # the cheap refusals here, on the loop, before any queueing (material.precheck_*)
            precheck()
        except kx.MaterialError:
            raise
        except Exception:  # noqa: BLE001, S110  (the worker's full reading reports anything odd)
            pass
        return material.Material.from_wire(await self._call(fn, *args))

    async def generate(self, fn, *args):
        """``fn(*args)`` in a worker process (a module-level function with picklable arguments
        and result): CPU-heavy work of our own, such as an RSA key for a certificate request
        (app/certificate_requests/csr.py), bounded by the same queue as the readings."""
        return await self._call(fn, *args)

    async def _call(self, fn, *args):
        if self._pending >= self._queue_limit:
            raise MaterialBusy(f"{self._pending} certificates are being read; retry in a few seconds")
        self._pending += 1
        try:
            executor = await self._executor()
            wire = await asyncio.get_running_loop().run_in_executor(executor, partial(fn, *args))
        except kx.MaterialError:
            raise
        except BrokenProcessPool:
            self._pool = None  # a worker died (killed, out of memory): start afresh next time
            raise MaterialBusy("the certificate reader restarted; retry") from None
        except Exception:  # noqa: BLE001  (anything else the libraries raise on hostile input)
            raise kx.InvalidCertificate("the material could not be read") from None
        finally:
            self._pending -= 1
        return wire

    async def from_pem(self, certificate_pem, private_key_pem, *, chain_pem=None, passphrase=None) -> material.Material:
        precheck = partial(material.precheck_pem, certificate_pem, private_key_pem, chain_pem)
        return await self._run(precheck, _read_pem, certificate_pem, private_key_pem, chain_pem, passphrase)

    async def from_pkcs12(self, data: bytes, password: str | None) -> material.Material:
        return await self._run(partial(material.precheck_pkcs12, data), _read_pkcs12, data, password)

    def close(self) -> None:
        """Stop the workers now: one may be seconds into a hostile key that nobody awaits."""
        self._closed = True
        if self._pool is not None:
            self._stop(self._pool)
            self._pool = None

    @staticmethod
    def _stop(pool: ProcessPoolExecutor) -> None:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # no public way before Python 3.14's terminate_workers()
            with contextlib.suppress(OSError, ValueError):
                process.terminate()
