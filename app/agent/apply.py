"""The apply pipeline: stage, validate, switch, reload, verify — and roll back on any failure.

1. stage: write new bundle copies (content-addressed, harmless to the running daemons) and each
   changed configuration file under a temporary name beside the live one;
2. validate: build derived files (the Postfix table) and run each daemon's own check on a copy
   of its main configuration that includes the staged files;
3. switch: keep a hard link to each live file, then rename(2) the staged file over it;
4. reload the daemons whose served configuration changed, or apply the change through the
   daemon's runtime API when it has one and no reload is needed (HAProxy);
5. verify by handshake (``app.agent.verify``).

A failure before the switch leaves the live files untouched. A failure after it renames the
saved links back, reloads again and verifies that the previous certificates are served again.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.agent.backends.base import (
    BACKUP_SUFFIX,
    Backend,
    BundleRef,
    Rendered,
    StepError,
    View,
    staged_path,
)
from app.agent.bundles import BundleStore
from app.agent.fsutil import atomic_write, fsync_dir, read_or_none, write_file
from app.agent.metrics import AgentMetrics
from app.agent.verify import plan, run_probes


class VerifyFailed(StepError):
    """Verification failed; ``probes`` says which (daemon, service, bound name, error)."""

    def __init__(self, message: str, daemon: str, probes: list[dict]) -> None:
        super().__init__("verify", daemon, message)
        self.probes = probes


class ApplyFailed(Exception):
    def __init__(self, result: dict) -> None:
        super().__init__(result.get("message", "apply failed"))
        self.result = result


@dataclass
class _Work:
    backend: Backend
    rendered: Rendered
    staged: dict[Path, Path] = field(default_factory=dict)
    derived: set[Path] = field(default_factory=set)  # built from staged files (Postfix table)
    switched: list[tuple[Path, Path | None]] = field(default_factory=list)  # (live, backup)
    # The render follows the one last applied by named changes (Rendered.changed/added/
    # dropped): staging and pruning look at those alone.
    incremental: bool = False


def _backup_path(live: Path) -> Path:
    return live.with_name(f".{live.name}{BACKUP_SUFFIX}")


class Pipeline:
    def __init__(
        self,
        store: BundleStore,
        backends: list[Backend],
        *,
        verify_timeout: float = 5.0,
        verify_sample: int = 24,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.backends = backends
        self.verify_timeout = verify_timeout
        self.verify_sample = verify_sample
        # Per backend, the bundle copies this process knows to exist (listed once, then kept
        # up to date as it writes and prunes), so a change does not stat or list 10,000 files.
        self._copies: dict[str, set[Path]] = {}
        # Drift repair for the next live apply (app.agent.drift), daemon -> fingerprints of the
        # bundles its drifted names should serve: that daemon's files are all staged again
        # (whatever they hold now), those bundle copies rewritten if their bytes differ, and
        # the daemon reloaded even when nothing else changed.
        self.repair: dict[str, set[str]] = {}
        # Per backend, the bundle a name-addressed file (a ``BundleRef`` in ``files``: nginx's
        # by-name files, Courier's) is known to hold, so a one-name change neither reads nor
        # compares the other 10,000. Set after a success; dropped for every file a failed
        # apply switched (the rollback may not have restored it).
        self._refs: dict[str, dict[Path, str]] = {}
        # Per backend, the configuration bytes a file is known to hold (same rules as _refs).
        self._written: dict[str, dict[Path, bytes]] = {}
        # Per backend, the ``Rendered.token`` of its last successfully applied render.
        self._applied_render: dict[str, int] = {}

    def _known_copies(self, backend: Backend) -> set[Path]:
        known = self._copies.get(backend.name)
        if known is None:
            directory = backend.bundle_dir
            known = set()
            for path in directory.glob("*.pem") if directory.is_dir() else ():
                # The backend's own (memoized) path object where it is the same file, so that
                # later set operations match by identity instead of comparing paths.
                same = backend.bundle_path(path.name.split(".", 1)[0])
                known.add(same if same == path else path)
            backend.secure_existing(known)  # copies of an earlier run, maybe another group
            self._copies[backend.name] = known
        return known

    # -- staging ---------------------------------------------------------------------------
    def _mode(self, backend: Backend) -> tuple[int, str | None]:
        return backend.file_mode()

    def _content(self, backend: Backend, content: bytes | BundleRef) -> bytes:
        if isinstance(content, BundleRef):
            return backend.bundle_bytes(*self.store.read(content.fingerprint))
        return content

    async def _prepare(self, live: bool) -> None:
        for backend in self.backends:
            await backend.prepare(live)

    def _stage(self, backend: Backend, view: View) -> _Work:
        work = _Work(backend, backend.render(view))
        mode, group = self._mode(backend)
        backend.ensure_directories()
        known = self._known_copies(backend)
        suspect = self.repair.get(backend.name)
        rendered = work.rendered
        bundles = rendered.bundles
        # The render follows the one this process last applied successfully, by the names a
        # delta changed: only the files and bundle copies it says it touched are looked at.
        work.incremental = (
            suspect is None
            and rendered.base is not None
            and rendered.base == self._applied_render.get(backend.name)
        )
        if work.incremental and rendered.added is not None:
            candidates = rendered.added
        else:
            # Set operations over dicts and sets of paths run in C on the stored hashes.
            candidates = bundles if suspect is not None else set(bundles) - known
        for path in candidates:
            fp = bundles[path]
            if suspect is not None and fp in suspect:
                data = backend.bundle_bytes(*self.store.read(fp))
                if read_or_none(path) != data:  # swapped behind the agent's back
                    atomic_write(path, data, mode, group)
                known.add(path)
            elif path not in known:
                if not path.exists():
                    atomic_write(path, backend.bundle_bytes(*self.store.read(fp)), mode, group)
                known.add(path)
        refs = self._refs.setdefault(backend.name, {})
        written = self._written.setdefault(backend.name, {})
        files = rendered.files.items()
        if work.incremental and rendered.changed is not None:
            # Only what differs from the render this process last applied successfully.
            files = [(live, rendered.files[live]) for live in rendered.changed if live in rendered.files]
        for live, content in files:
            if isinstance(content, BundleRef):
                fp = content.fingerprint
                if refs.get(live) == fp and (suspect is None or fp not in suspect):
                    continue  # this process wrote it and nobody reported it drifted
                data = self._content(backend, content)
                if read_or_none(live) == data and (suspect is None or fp not in suspect):
                    refs[live] = fp
                    continue
            else:
                data = content
                # The bytes this process last saw live (an unchanged render returns the same
                # object: nginx's map, Postfix's unchanged shards): no read of a 1.5 MB file.
                # Otherwise the bytes known to be live are compared in memory (they differ at the
                # first byte or in length, usually): no read of the 1 MB crt-list per change.
                known_bytes = written.get(live)
                if suspect is None and (
                    known_bytes is data
                    or (known_bytes == data if known_bytes is not None else read_or_none(live) == data)
                ):
                    written[live] = data
                    continue
            staged = staged_path(live)
            write_file(staged, data, mode, group)
            work.staged[live] = staged
        return work

    def _discard_staged(self, works: list[_Work]) -> None:
        for work in works:
            for staged in work.staged.values():
                staged.unlink(missing_ok=True)

    # -- switching -------------------------------------------------------------------------
    def _switch(self, work: _Work) -> None:
        """Rename staged files over the live ones, keeping a hard link to each old file.

        Derived files get no link: smtpd notices a replaced table because the old file's link
        count drops to zero (Postfix dict_changed_name()), which a kept link would prevent.
        They are rebuilt from the restored sources on rollback instead.
        """
        for live, staged in work.staged.items():
            backup = None
            if live.exists() and live not in work.derived:
                backup = _backup_path(live)
                backup.unlink(missing_ok=True)
                os.link(live, backup)
            os.replace(staged, live)
            work.switched.append((live, backup))
        for live in work.rendered.remove:
            if not live.exists():
                continue
            backup = _backup_path(live)
            backup.unlink(missing_ok=True)
            os.link(live, backup)
            live.unlink()
            work.switched.append((live, backup))
        for directory in {live.parent for live in [*work.staged, *work.rendered.remove]}:
            fsync_dir(directory)

    async def _restore(self, work: _Work) -> None:
        for live, backup in reversed(work.switched):
            if live in work.derived:
                continue
            if backup is not None:
                os.replace(backup, live)
            else:
                live.unlink(missing_ok=True)
        if work.derived:
            await self._rebuild_derived(work)

    async def _rebuild_derived(self, work: _Work) -> None:
        """Build derived files again from the restored sources, staged and renamed as usual."""
        sources: dict[Path, Path] = {}
        for live, _ in work.switched:
            if live not in work.derived and live.exists():
                sources[live] = staged_path(live)
                shutil.copyfile(live, sources[live])
        try:
            extra = await work.backend.build(sources)
            for live, staged in extra.items():
                os.replace(staged, live)
        finally:
            for staged in sources.values():
                staged.unlink(missing_ok=True)

    def _finish(self, work: _Work) -> None:
        """After success: drop the saved links and the bundle copies nothing names any more."""
        for _, backup in work.switched:
            if backup is not None:
                backup.unlink(missing_ok=True)
        refs = self._refs.setdefault(work.backend.name, {})
        written = self._written.setdefault(work.backend.name, {})
        for live, _ in work.switched:
            content = work.rendered.files.get(live)
            if isinstance(content, BundleRef):
                refs[live] = content.fingerprint
                written.pop(live, None)
            else:
                refs.pop(live, None)
                if isinstance(content, bytes):
                    written[live] = content
                else:
                    written.pop(live, None)
        if work.rendered.token is not None:
            self._applied_render[work.backend.name] = work.rendered.token
        rendered = work.rendered
        known = self._known_copies(work.backend)
        if work.incremental and rendered.dropped is not None:
            # What this render stopped naming: every other known copy is named by the previous
            # render, hence kept. (Copies a failed apply wrote are not: but every render bumps
            # its backend's token, so the render after a failure never follows the applied one
            # and is pruned in full, below.)
            gone = {p for p in rendered.dropped if p not in rendered.bundles and p not in rendered.files}
        else:
            gone = known - (set(rendered.bundles) | set(rendered.files))
        for path in gone:
            if path.parent == work.backend.bundle_dir and path.suffix == ".pem":
                path.unlink(missing_ok=True)
        known -= gone

    # -- the pipeline ----------------------------------------------------------------------
    async def apply(self, view: View, previous: View | None, *, live: bool = True) -> dict:
        """Apply ``view``; return the success result, or raise ApplyFailed with the failure.

        ``live=False`` (bootstrap, before any daemon runs) skips validation, reload and verify.
        A live run is measured (``app.agent.metrics``): its time, its steps', how it failed.
        """
        timings: dict[str, float] = {}
        if not live or self.metrics is None:
            return await self._apply(view, previous, live, timings)
        started = time.monotonic()
        try:
            result = await self._apply(view, previous, live, timings)
        except ApplyFailed as failed:
            self.metrics.record_run(time.monotonic() - started, timings, failed.result)
            raise
        self.metrics.record_run(time.monotonic() - started, timings, None)
        return result

    async def _apply(self, view: View, previous: View | None, live: bool, timings: dict[str, float]) -> dict:
        mark = time.monotonic()

        def lap(step: str) -> None:
            nonlocal mark
            now = time.monotonic()
            timings[step] = round(now - mark, 3)
            mark = now

        positions = {b.name: b.log_position() for b in self.backends}
        try:
            await self._prepare(live)
        except StepError as exc:
            raise ApplyFailed(self._failure(exc, positions, rolled_back=True)) from None
        works = [self._stage(b, view) for b in self.backends]
        lap("stage")
        try:
            for work in works:
                if work.staged or not live:
                    extra = await work.backend.build(work.staged)
                    work.derived |= set(extra)
                    work.staged.update(extra)
                if work.staged and live:
                    await work.backend.validate(work.staged)
        except StepError as exc:
            self._discard_staged(works)
            raise ApplyFailed(self._failure(exc, positions, rolled_back=True)) from None
        lap("validate")
        for work in works:
            self._switch(work)
        lap("switch")
        changed = {w.backend.name: bool(w.switched) for w in works}
        if not live:
            for work in works:
                self._finish(work)
            return {"changed": changed, "verified": [], "timings": timings}
        try:
            await self._reload(works)
            lap("reload")
            verified = await self._verify(view, previous)
            lap("verify")
        except StepError as exc:
            failure = self._failure(exc, positions, rolled_back=False)
            if isinstance(exc, VerifyFailed):
                failure["probes"] = exc.probes  # for app.agent.isolation.verify_culprits
            failure["rolled_back"], note = await self._rollback(works, previous, view)
            if note:
                failure["message"] += f"\nrollback: {note}"
            raise ApplyFailed(failure) from None
        for work in works:
            self._finish(work)
        return {"changed": changed, "verified": verified, "timings": timings}

    async def validate_only(self, view: View) -> StepError | None:
        """Stage and validate ``view`` like :meth:`apply`, then discard it: the live files are
        never touched. Used to find which names a daemon's configuration refuses."""
        try:
            await self._prepare(True)
        except StepError as exc:
            return exc
        works = [self._stage(b, view) for b in self.backends]
        try:
            for work in works:
                if work.staged:
                    work.staged.update(await work.backend.build(work.staged))
                    await work.backend.validate(work.staged)
        except StepError as exc:
            return exc
        finally:
            self._discard_staged(works)
        return None

    async def _reload(self, works: list[_Work], *, restored: bool = False) -> None:
        """Reload the daemons whose change needs it; hand the others' changed files to their
        runtime API (HAProxy), if they have one."""
        for work in works:
            repair = work.backend.name in self.repair  # a drifted daemon reloads even when unchanged
            if not work.switched and not repair:
                continue
            changed = {live for live, _ in work.switched}
            if repair or work.backend.needs_reload(changed):
                await work.backend.reload()
            else:
                await work.backend.apply_runtime(changed, restored=restored)

    async def _verify(self, view: View, previous: View | None) -> list[dict]:
        probes = plan(self.backends, view, previous, self.verify_sample)
        verified, failures = await run_probes(probes, self.verify_timeout)
        if failures:
            probe, error = failures[0]
            extra = f" (and {len(failures) - 1} more failed probes)" if len(failures) > 1 else ""
            raise VerifyFailed(
                f"port {probe.port} {probe.protocol} SNI {probe.sni}: {error}{extra}",
                probe.daemon,
                [
                    {"daemon": p.daemon, "service": p.service, "name": p.name, "error": e}
                    for p, e in failures
                ],
            )
        return verified

    async def _rollback(
        self, works: list[_Work], previous: View | None, failed: View
    ) -> tuple[bool, str]:
        """Put the previous files back, reload, and check the previous certificates are served."""
        for work in works:
            refs = self._refs.get(work.backend.name, {})
            written = self._written.get(work.backend.name, {})
            self._applied_render.pop(work.backend.name, None)
            for live, _ in work.switched:
                refs.pop(live, None)
                written.pop(live, None)
        try:
            for work in works:
                await self._restore(work)
            await self._reload(works, restored=True)
            if previous is not None:
                await self._verify(previous, failed)
        except StepError as exc:
            return False, str(exc)
        return True, ""

    def _failure(self, exc: StepError, positions: dict[str, int], *, rolled_back: bool) -> dict:
        message = exc.message
        backend = next((b for b in self.backends if b.name == exc.daemon), None)
        if backend is not None:
            logged = backend.log_since(positions.get(backend.name, 0))
            if logged:
                message += f"\n{backend.name} log:\n{logged}"
        return {
            "status": "failed",
            "step": exc.step,
            "daemon": exc.daemon,
            "message": message,
            "rolled_back": rolled_back,
        }
