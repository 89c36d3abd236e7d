"""Postfix: the server-wide bundle and a sharded SNI table (postconf(5) ``tls_server_sni_maps``).

Files written in the backend directory:

* ``default.pem`` — the server-wide bundle, named by ``smtpd_tls_chain_files`` in main.cf
  (postconf(5): key first, then the leaf, then its issuers, in one file);
* ``sni.00`` … ``sni.ff`` and the tables built from them (``sni.00.lmdb``, or ``sni.00.db``
  for ``hash:``) — 256 tables (:data:`SHARDS`) that together hold one key per host name whose
  certificate differs from the server-wide one, the value naming that bundle. A key lives in
  the shard named by the first two hex digits of ``sha256(key)`` (``key`` as written in the
  table, so ``.a.test`` for ``*.a.test``): stable across versions and processes, and even
  (about 1/256 each: 39 names at 10,000, 195 at 50,000). ``tls_server_sni_maps`` in main.cf
  lists all the tables (``sni_maps_value``): Postfix looks each key (the name, then each
  parent domain with a leading dot) up in every listed table, so the shards answer exactly
  what one table would, and a change rebuilds only the shards whose source changed — postmap
  has no incremental update, so one table of 10,000 names cost a full rebuild (about 0.3 s)
  per change, and one of 16 shards (625 names) still grew with the server.
  The earlier layout of 16 shards (``sni.0`` … ``sni.f``, one hex digit, :data:`LEGACY_SHARDS`)
  is still served where main.cf names it: the agent reads which layout main.cf lists
  (``postconf -xh tls_server_sni_maps``, :meth:`PostfixBackend.prepare`) and, while it is the
  16-shard one, keeps the 256 tables up to date beside it, so that switching the line needs
  nothing but ``postfix reload``; once main.cf names the 256 tables, the 16 are removed in the
  next change (docs/agent.md, "Upgrading from 16 shards").
  ``postmap -F`` (postmap(1)) embeds the bundles in the table, so the table must be as private
  as a key: postmap 3.7 gives it the SOURCE file's mode whatever the umask (measured: a 0644
  source under umask 077 gives a 0644 table), so every built table is set to the backend's file
  mode (0600 root) before it goes live. It is built under a temporary name, then renamed over
  the live table: an in-place rebuild would stall SNI lookups while postmap runs.
* ``bundles/<fingerprint>.pem`` — the bundles the table names.

smtpd notices a replaced table on its next connection and restarts by itself, so a table
change needs no reload; the server-wide bundle is read at process start, so changing it runs
``postfix reload``. Either way the apply pipeline verifies by handshake.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
from collections import Counter
from pathlib import Path

from app.agent.backends.base import Backend, BundleRef, Rendered, StepError, View, run
from app.agent.fsutil import secure_file

SHARDS = 256  # two hex digits of SHA-256: the layout a new installation's main.cf names
LEGACY_SHARDS = 16  # one hex digit: the layout of installations before 256 (still served)
LAYOUTS = (SHARDS, LEGACY_SHARDS)
_DIGITS = {SHARDS: 2, LEGACY_SHARDS: 1}


def shard_ids(shards: int = SHARDS) -> list[str]:
    """The shards of a layout, in the order main.cf lists them: ``00`` … ``ff`` (or ``0`` … ``f``)."""
    return [f"{i:0{_DIGITS[shards]}x}" for i in range(shards)]


SHARD_IDS = shard_ids()


def default_map_type() -> str:
    """``lmdb`` when the postfix-lmdb plugin is installed (Debian: postfix-lmdb), else ``hash``."""
    return "lmdb" if Path("/usr/lib/postfix/postfix-lmdb.so").exists() else "hash"


_SUFFIX = {"lmdb": ".lmdb", "hash": ".db", "btree": ".db", "cdb": ".cdb"}


def shard_of(key: str, shards: int = SHARDS) -> str:
    """The shard of a table key: the first two (16 shards: one) hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[: _DIGITS[shards]]


def sni_maps_value(directory: Path | str, map_type: str, shards: int = SHARDS) -> str:
    """What main.cf's ``tls_server_sni_maps`` must be for the agent's shards in ``directory``."""
    return ", ".join(f"{map_type}:{Path(directory) / f'sni.{i}'}" for i in shard_ids(shards))


def main_cf_line(directory: Path | str, map_type: str, shards: int = SHARDS) -> str:
    """The line for main.cf, one table per continuation line (main.cf syntax: a line that
    starts with whitespace continues the previous one)."""
    tables = sni_maps_value(directory, map_type, shards).split(", ")
    return "tls_server_sni_maps =\n    " + ",\n    ".join(tables) + "\n"


_HEADER = "# written by the certpost agent; do not edit\n"


class _Shards:
    """The shard sources of the last render: names per shard, their text, the bundle paths.

    ``update`` brings it to a new ``mail`` map by the names that may differ from the last one
    (the view's named changes, or else a symmetric difference of the two maps' items); only
    the shards holding those are rendered again. One entry is kept per shard of every layout
    written (shard ids of the two layouts differ in length, so they share one dict). A new
    server-wide certificate, or another set of layouts, starts a new one (names bound to the
    server-wide certificate have no table entry).
    """

    def __init__(self, backend: PostfixBackend, default: str, layouts: tuple[int, ...]) -> None:
        self.backend = backend
        self.default = default
        self.layouts = layouts
        self.digits = [_DIGITS[n] for n in layouts]
        self.mail: dict[str, str] = {}
        self.view: int | None = None  # the token of the view last rendered
        # shard id -> name -> table line
        self.by_shard: dict[str, dict[str, str]] = {i: {} for n in layouts for i in shard_ids(n)}
        self.texts: dict[str, bytes] = {}
        self.files: dict[Path, bytes] = {}  # source path -> text, as Rendered.files
        self.counts: Counter[str] = Counter()  # fingerprint -> names in the table with it
        self.paths: dict[Path, str] = {}  # bundle path -> fingerprint, as Rendered.bundles
        # What the last update changed: shard ids, bundle paths added and no longer named.
        self.touched: set[str] = set()
        self.added: dict[Path, str] = {}
        self.dropped: set[Path] = set()

    def _entry(self, name: str, fp: str, add: bool) -> None:
        if fp == self.default:
            return  # the server-wide bundle answers names without a table entry
        backend = self.backend
        # postconf(5): a ".a.test" key matches subdomains; Postfix has no "*" syntax.
        key = name[1:] if name.startswith("*.") else name
        prefix = backend._shard(key)
        path = backend.bundle_path(fp)
        line = f"{key}\t{path}\n" if add else ""
        for digits in self.digits:
            shard = prefix[:digits]
            if add:
                self.by_shard[shard][name] = line
            else:
                self.by_shard[shard].pop(name, None)
            self.texts.pop(shard, None)
            self.touched.add(shard)
        if add:
            self.counts[fp] += 1
            if path not in self.paths:
                self.paths[path] = fp
                self.added[path] = fp
                self.dropped.discard(path)
        else:
            self.counts[fp] -= 1
            if self.counts[fp] <= 0:
                del self.counts[fp]
                self.paths.pop(path, None)
                self.added.pop(path, None)
                self.dropped.add(path)

    def update(self, mail: dict[str, str], changed=None) -> None:
        """Bring the shards to ``mail``; ``changed``: the names that may differ from the last
        map (None: find them). ``mail`` is kept, not copied: views are never changed."""
        self.touched, self.added, self.dropped = set(), {}, set()
        old = self.mail
        if changed is None:
            if old == mail:
                self.mail = mail
                return
            changed = {name for name, _ in old.items() ^ mail.items()}
        for name in changed:
            before, after = old.get(name), mail.get(name)
            if before == after:
                continue
            if before is not None:
                self._entry(name, before, add=False)
            if after is not None:
                self._entry(name, after, add=True)
        self.mail = mail

    def text(self, shard: str) -> bytes:
        text = self.texts.get(shard)
        if text is None:
            lines = self.by_shard[shard]
            text = self.texts[shard] = "".join([_HEADER, *(lines[n] for n in sorted(lines))]).encode()
        return text


class PostfixBackend(Backend):
    name = "postfix"

    @classmethod
    def default_commands(cls, main, raw):
        confdir = str(raw.get("config_directory") or main or "/etc/postfix")
        return [], ["postfix", "-c", confdir, "reload"]

    def __init__(self, config, options=None):
        super().__init__(config, options)
        opts = {**config.options, **(options or {})}
        self.cert_first = bool(opts.get("cert_first", False))
        self.map_type = opts.get("map_type") or default_map_type()
        self.config_directory = Path(
            opts.get("config_directory") or config.main_config or "/etc/postfix"
        )
        self.default_bundle = self.directory / "default.pem"
        # Every shard source of both layouts (their ids differ in length).
        self.all_sources = {i: self.directory / f"sni.{i}" for n in LAYOUTS for i in shard_ids(n)}
        # The layout main.cf names (prepare()), and the layouts written: 256 always, and 16
        # beside it while main.cf still names 16 (so switching the line finds its tables).
        self.layout = SHARDS
        self.layouts: tuple[int, ...] = (SHARDS,)
        self.map_sources = self._sources()
        self._layout_seen: tuple | None = None  # main.cf's stat when the layout was read
        self._layout_error: str | None = None
        self._stale = True  # look for files of a layout no longer written
        self._tables_known = False  # every source has its table (checked once per layout set)
        self._shards: dict[str, str] = {}  # key -> first two hex digits, memoized
        self._cache: _Shards | None = None  # the last render, by shard
        self._renders = 0

    def _sources(self) -> dict[str, Path]:
        return {i: self.all_sources[i] for n in self.layouts for i in shard_ids(n)}

    def bundle_file_name(self, fingerprint: str) -> str:
        # The test hook's copies get their own name so a normal copy is never reused for it.
        return f"{fingerprint}.certfirst.pem" if self.cert_first else f"{fingerprint}.pem"

    def sni_maps_value(self, shards: int = SHARDS) -> str:
        return sni_maps_value(self.directory, self.map_type, shards)

    def _shard(self, key: str) -> str:
        shard = self._shards.get(key)
        if shard is None:
            if len(self._shards) > 200_000:
                self._shards.clear()
            shard = self._shards[key] = shard_of(key, SHARDS)
        return shard

    def bundle_bytes(self, key_pem: bytes, certs_pem: bytes) -> bytes:
        if self.cert_first:  # test hook: Postfix then fails the handshake ("key not first")
            return certs_pem + key_pem
        return key_pem + certs_pem

    def map_file(self, source: Path) -> Path:
        return source.with_name(source.name + _SUFFIX.get(self.map_type, ".db"))

    # -- which layout main.cf names ------------------------------------------------------------
    async def prepare(self, live: bool) -> None:
        """Read which shard layout main.cf's ``tls_server_sni_maps`` lists, before rendering.

        ``postconf -c DIR -xh tls_server_sni_maps`` (``$name`` expanded) must list exactly the
        256 tables or exactly the 16 of earlier versions, in order; anything else fails a live
        apply that changes Postfix's files, at ``validate`` (nothing switched), with the line to
        write, because a table main.cf does not list would silently serve the server-wide
        certificate for its names (a change of the other daemons alone goes on). The answer is
        kept while main.cf's stat(2) is the same, so a change runs no postconf. Without
        postconf (no Postfix on this machine) nothing can be checked and 256 is written.
        """
        main_cf = self.config_directory / "main.cf"
        try:
            st = main_cf.stat()
            seen = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            seen = None
        if seen is None or seen != self._layout_seen:
            layout, error = await self._read_layout()
            self._layout_error = error
            self._layout_seen = seen if error is None else None
            if layout is not None and layout != self.layout:
                self.layout = layout
            layouts = (SHARDS,) if self.layout == SHARDS else (SHARDS, LEGACY_SHARDS)
            if layouts != self.layouts:
                self.layouts = layouts
                self.map_sources = self._sources()
                self._cache, self._stale, self._tables_known = None, True, False

    async def _read_layout(self) -> tuple[int | None, str | None]:
        """(the layout main.cf names, None) or (None, the error quoting the line to write)."""
        if shutil.which("postconf") is None:
            return None, None
        status, output = await run(
            ["postconf", "-c", str(self.config_directory), "-xh", "tls_server_sni_maps"]
        )
        tables = re.split(r"[\s,]+", output.strip())
        for shards in LAYOUTS:
            if status == 0 and tables == re.split(r"[\s,]+", self.sni_maps_value(shards)):
                return shards, None
        first, *_, last = self.sni_maps_value(LEGACY_SHARDS).split(", ")
        return None, (
            f"{self.config_directory}/main.cf must say: tls_server_sni_maps = "
            f"{self.sni_maps_value()} (or the 16 tables of installations from before the "
            f"256 shards, {first}, … {last}; docs/agent.md)"
            + (f" (postconf: {output})" if status != 0 else "")
        )

    async def check_main_cf(self) -> None:
        """main.cf must list exactly the agent's shards, or names would silently get the default."""
        self._layout_seen = None
        await self.prepare(live=True)
        if self._layout_error is not None:
            raise StepError("validate", self.name, self._layout_error)

    # -- rendering -----------------------------------------------------------------------------
    def render(self, view: View) -> Rendered:
        """``default.pem`` and the shard sources of every layout written.

        The shards are kept from the previous render (:class:`_Shards`) and only those holding
        a changed name are rendered again: a one-domain change renders one shard of about
        N/256 names, and returns the others as the same bytes objects (which the pipeline
        knows are live). The changed names come with the view (``View.changes_since``) when it
        was made from the one rendered last; ``rendered.changed``, ``added`` and ``dropped``
        tell the pipeline which files and bundle copies that touched.
        """
        rendered = Rendered()
        cache = self._cache
        changed = None
        if cache is None or cache.default != view.server_certificate or cache.layouts != self.layouts:
            cache = self._cache = _Shards(self, view.server_certificate, self.layouts)
        else:
            changed = view.changes_since(cache.view, "mail")
        fresh = cache.view is None
        cache.update(view.mail, changed)
        cache.view = view.token
        sources = self.map_sources
        touched = sources if fresh else cache.touched
        for shard in touched:
            cache.files[sources[shard]] = cache.text(shard)
        rendered.files = dict(cache.files)
        rendered.files[self.default_bundle] = BundleRef(view.server_certificate)
        rendered.bundles = cache.paths  # the cache's own: valid until the next render
        self._renders += 1
        rendered.base, rendered.token = self._renders - 1, self._renders
        if not fresh:
            rendered.changed = {self.default_bundle, *(sources[s] for s in cache.touched)}
            rendered.added, rendered.dropped = cache.added, cache.dropped
        if self._stale:
            rendered.remove = self._stale_files()
            self._stale = bool(rendered.remove)  # looked for again until they are gone
        return rendered

    def _stale_files(self) -> list[Path]:
        """Sources and tables of a layout no longer written (16 shards once main.cf names 256)."""
        written = set(self.map_sources.values())
        out = []
        for live in self.all_sources.values():
            if live not in written:
                out += [p for p in (live, self.map_file(live)) if p.exists()]
        return out

    async def build(self, staged: dict[Path, Path]) -> dict[Path, Path]:
        """Build each staged shard's table with ``postmap -F`` (which reads every named bundle).

        Only shards whose source changed are staged, so only those are rebuilt; each is built
        under its staged name and renamed over the live table in the switch.
        """
        sources = [(live, staged[live]) for live in self.map_sources.values() if live in staged]
        if not self._tables_known:
            # First build of this process (or layout): a source on disk without its table (an
            # upgrade, a crash between two renames) is built from the live source.
            missing = [
                live for live in self.map_sources.values()
                if live not in staged and live.exists() and not self.map_file(live).exists()
            ]
            sources += [(live, live) for live in missing]
            self._tables_known = not missing
        if not sources:
            return {}
        if shutil.which("postmap") is None:
            raise StepError("validate", self.name, "postmap is not installed")
        limiter = asyncio.Semaphore(os.cpu_count() or 1)

        async def postmap(source: Path) -> tuple[int, str]:
            argv = ["postmap", "-c", str(self.config_directory), "-F", f"{self.map_type}:{source}"]
            async with limiter:
                return await run(argv, umask=0o077)

        results = await asyncio.gather(*(postmap(source) for _, source in sources))
        for (_, source), (status, output) in zip(sources, results, strict=True):
            if status != 0 or "warning" in output.lower():
                for live, built in sources:
                    if built != live:
                        self.map_file(built).unlink(missing_ok=True)
                self._tables_known = False
                raise StepError(
                    "validate", self.name, output or f"postmap {source} exited with {status}"
                )
        mode, group = self.file_mode()
        for _, source in sources:
            # postmap gives the table the source file's mode (not umask's): a source copied
            # with default permissions (a rollback rebuild) made a world-readable table of keys.
            secure_file(self.map_file(source), mode, group)
        return {
            self.map_file(live): self.map_file(source) for live, source in sources if source != live
        }

    async def validate(self, staged: dict[Path, Path]) -> None:
        if self._layout_error is not None:  # read before rendering (prepare)
            raise StepError("validate", self.name, self._layout_error)
        await self.run_validate_command(self.config_directory)

    def missing_files(self) -> bool:
        return not all(self.map_file(live).exists() for live in self.map_sources.values())

    def needs_reload(self, changed: set[Path]) -> bool:
        return self.default_bundle in changed
