"""Postfix: the server-wide bundle and a sharded SNI table (postconf(5) ``tls_server_sni_maps``).

Files written in the backend directory:

* ``default.pem`` — the server-wide bundle, named by ``smtpd_tls_chain_files`` in main.cf
  (postconf(5): key first, then the leaf, then its issuers, in one file);
* ``sni.0`` … ``sni.f`` and the tables built from them (``sni.0.lmdb``, or ``sni.0.db`` for
  ``hash:``) — ``SHARDS`` (16) tables that together hold one key per host name whose
  certificate differs from the server-wide one, the value naming that bundle. A key lives in
  shard ``sha256(key)`` 's first hex digit (``key`` as written in the table, so ``.a.test`` for
  ``*.a.test``): stable across versions and processes, and even (about 1/16 each).
  ``tls_server_sni_maps`` in main.cf lists all sixteen tables (``sni_maps_value``): Postfix looks
  each key (the name, then each parent domain with a leading dot) up in every listed table, so
  the shards answer exactly what one table would, and a change rebuilds only the shards whose
  source changed — postmap has no incremental update, so one table of 10,000 names cost a full
  rebuild (about 0.3 s) per change.
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

SHARDS = 16  # one hex digit of SHA-256; changing it means a new main.cf line (docs/agent.md)
SHARD_IDS = [f"{i:x}" for i in range(SHARDS)]


def default_map_type() -> str:
    """``lmdb`` when the postfix-lmdb plugin is installed (Debian: postfix-lmdb), else ``hash``."""
    return "lmdb" if Path("/usr/lib/postfix/postfix-lmdb.so").exists() else "hash"


_SUFFIX = {"lmdb": ".lmdb", "hash": ".db", "btree": ".db", "cdb": ".cdb"}


def shard_of(key: str) -> str:
    """The shard (``0``-``f``) of a table key: the first hex digit of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[0]


def sni_maps_value(directory: Path | str, map_type: str) -> str:
    """What main.cf's ``tls_server_sni_maps`` must be for the agent's shards in ``directory``."""
    return ", ".join(f"{map_type}:{Path(directory) / f'sni.{i}'}" for i in SHARD_IDS)


_HEADER = "# written by the certpost agent; do not edit\n"


class _Shards:
    """The shard sources of the last render: names per shard, their text, the bundle paths.

    ``update`` brings it to a new ``mail`` map by the names that differ from the last one
    (a symmetric difference of the two maps' items); only the shards holding those are
    rendered again. A new server-wide certificate starts a new one (names bound to it have no
    table entry).
    """

    def __init__(self, backend: PostfixBackend, default: str) -> None:
        self.backend = backend
        self.default = default
        self.mail: dict[str, str] = {}
        self.by_shard: dict[str, dict[str, str]] = {i: {} for i in SHARD_IDS}  # name -> table line
        self.texts: dict[str, bytes] = {}
        self.counts: Counter[str] = Counter()  # fingerprint -> names in the table with it
        self.paths: dict[Path, str] = {}  # bundle path -> fingerprint, as Rendered.bundles

    def _entry(self, name: str, fp: str, add: bool) -> None:
        if fp == self.default:
            return  # the server-wide bundle answers names without a table entry
        backend = self.backend
        # postconf(5): a ".a.test" key matches subdomains; Postfix has no "*" syntax.
        key = name[1:] if name.startswith("*.") else name
        shard = backend._shard(key)
        path = backend.bundle_path(fp)
        if add:
            self.by_shard[shard][name] = f"{key}\t{path}\n"
            self.counts[fp] += 1
            self.paths[path] = fp
        else:
            self.by_shard[shard].pop(name, None)
            self.counts[fp] -= 1
            if self.counts[fp] <= 0:
                del self.counts[fp]
                self.paths.pop(path, None)
        self.texts.pop(shard, None)

    def update(self, mail: dict[str, str]) -> None:
        old = self.mail
        if old == mail:
            return
        changed = {name for name, _ in old.items() ^ mail.items()}
        for name in changed:
            if name in old:
                self._entry(name, old[name], add=False)
        for name in changed:
            if name in mail:
                self._entry(name, mail[name], add=True)
        self.mail = dict(mail)

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
        self.map_sources = {i: self.directory / f"sni.{i}" for i in SHARD_IDS}
        self._shards: dict[str, str] = {}  # key -> shard, memoized (hashing is per render)
        self._cache: _Shards | None = None  # the last render, by shard

    def bundle_file_name(self, fingerprint: str) -> str:
        # The test hook's copies get their own name so a normal copy is never reused for it.
        return f"{fingerprint}.certfirst.pem" if self.cert_first else f"{fingerprint}.pem"

    def sni_maps_value(self) -> str:
        return sni_maps_value(self.directory, self.map_type)

    def _shard(self, key: str) -> str:
        shard = self._shards.get(key)
        if shard is None:
            if len(self._shards) > 200_000:
                self._shards.clear()
            shard = self._shards[key] = shard_of(key)
        return shard

    def bundle_bytes(self, key_pem: bytes, certs_pem: bytes) -> bytes:
        if self.cert_first:  # test hook: Postfix then fails the handshake ("key not first")
            return certs_pem + key_pem
        return key_pem + certs_pem

    def map_file(self, source: Path) -> Path:
        return source.with_name(source.name + _SUFFIX.get(self.map_type, ".db"))

    def render(self, view: View) -> Rendered:
        """``default.pem`` and the sixteen shard sources.

        The shards are kept from the previous render (:class:`_Shards`) and only those holding
        a changed name are rendered again: a one-domain change renders one shard of about
        N/16 names, and returns the other fifteen as the same bytes objects (which the pipeline
        knows are live). What is still O(names) is finding the changed names (a set difference
        of the two name maps, done in C) and copying the map of bundle paths.
        """
        rendered = Rendered()
        rendered.files[self.default_bundle] = BundleRef(view.server_certificate)
        cache = self._cache
        if cache is None or cache.default != view.server_certificate:
            cache = self._cache = _Shards(self, view.server_certificate)
        cache.update(view.mail)
        rendered.bundles.update(cache.paths)
        for i in SHARD_IDS:
            rendered.files[self.map_sources[i]] = cache.text(i)
        return rendered

    async def build(self, staged: dict[Path, Path]) -> dict[Path, Path]:
        """Build each staged shard's table with ``postmap -F`` (which reads every named bundle).

        Only shards whose source changed are staged, so only those are rebuilt; each is built
        under its staged name and renamed over the live table in the switch.
        """
        sources = []
        for live in self.map_sources.values():
            source = staged.get(live)
            if source is None and live.exists() and not self.map_file(live).exists():
                source = live  # first run with an unchanged source but no table yet
            if source is not None:
                sources.append((live, source))
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
        await self.check_main_cf()
        await self.run_validate_command(self.config_directory)

    async def check_main_cf(self) -> None:
        """main.cf must list exactly the agent's shards, or names would silently get the default."""
        if shutil.which("postconf") is None:
            return
        status, output = await run(
            ["postconf", "-c", str(self.config_directory), "-xh", "tls_server_sni_maps"]
        )
        expected = self.sni_maps_value()
        if status != 0 or re.split(r"[\s,]+", output.strip()) != re.split(r"[\s,]+", expected):
            raise StepError(
                "validate",
                self.name,
                f"{self.config_directory}/main.cf must say: tls_server_sni_maps = {expected}"
                + (f" (postconf: {output})" if status != 0 else ""),
            )

    def missing_files(self) -> bool:
        return not all(self.map_file(live).exists() for live in self.map_sources.values())

    def needs_reload(self, changed: set[Path]) -> bool:
        return self.default_bundle in changed
