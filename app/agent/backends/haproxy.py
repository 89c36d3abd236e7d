"""HAProxy 2.6 as a TLS front for Dovecot's implicit-TLS ports (IMAPS, POP3S).

Dovecot 2.3 re-parses every ``local_name`` block on each reload and stops starting at a few
thousand of them (docs/performance.md); HAProxy selects certificates by SNI from a ``crt-list``
and changes them through its runtime API without a reload. The front terminates TLS and hands
the plaintext to Dovecot listeners with ``haproxy = yes`` over PROXY protocol v2 with the SSL TLV
(``send-proxy-v2-ssl``), so Dovecot logs the client's address and treats the session as TLS
(``secured``: LOGIN allowed; the plain ports keep refusing it). STARTTLS (143, 110) stays on
Dovecot with the server-wide certificate.

Files in ``directory`` (HAProxy's configuration manual, 5.1 "crt-list"; management.txt 9.3):

* ``certpost.cfg`` — one ``frontend`` whose ONE ``bind`` line carries every listener address
  (``bind A:993,A:995 ssl crt-list …``) and routes by destination port to one ``backend`` per
  listener. One bind line means one set of SSL contexts for all ports: each bind line that
  loads the list costs its full memory again (about 224 MB at 10,000 certificates). Loaded
  with ``-f`` after the operator's main configuration (global section, sockets, defaults).
* ``certpost.crtlist`` — the first list on the bind line, with one line: ``default.pem`` (the
  server-wide certificate, which HAProxy presents to clients without SNI and to unknown names
  because it is the first certificate of the bind line; ``strict-sni`` is deliberately not
  used, so a client that sends no SNI, or a name not hosted here, still completes the
  handshake as it did with Dovecot);
* ``certpost.crtlist.0`` … ``certpost.crtlist.f`` — :data:`CRT_SHARDS` (16) lists after it on
  the same bind line, one line per bound mail name, ``bundles/<fingerprint>.pem <name>``, each
  name in the list of the first hex digit of the SHA-256 of the name. The name is an explicit
  SNI filter: a certificate is served only for the names bound to it, never for other names
  it covers. The lists are what the next start (or seamless reload) reads, so each change is
  persisted (staged, fsync'd, renamed) before the runtime API changes the running process;
  split, a one-domain change rewrites and fsyncs one list of about N/16 lines instead of one
  of N (1 MB at 10,000 names). Sixteen because HAProxy reads at most 64 words on a line
  (``MAX_LINE_ARGS``): the bind line carries two per list;
* ``default.pem`` and ``bundles/`` — the bundles: key first, then the leaf, and the chain only when
  it cannot be shared;
* ``issuers/`` — each intermediate chain once, read at start through the ``global`` line
  ``issuers-chain-path`` at the top of ``certpost.cfg``: every leaf of that issuer shares one
  parsed chain in the worker instead of holding its own (``haproxy_issuers``; about 5 KB per
  domain with OpenSSL 3, docs/performance.md section 12). Runtime payloads carry the chain.

A change of listeners changes ``certpost.cfg``: validated with ``haproxy -c`` and applied by a
seamless reload through the master CLI (``haproxy -W -S <socket>``: the old worker serves until
the new one has loaded every certificate). Any other change only rewrites crt-lists (and
``default.pem``), which are persisted first (the pipeline's switch) and then applied to the
running process through the runtime API, one command at a time: a new certificate is
``new``/``set``/``commit ssl cert``, a name is ``add ssl crt-list`` then ``del ssl crt-list`` of
its old line (the old line keeps serving until it is deleted, so there is no moment where the
name gets the default), and a certificate nothing names any more is ``del ssl cert``. Those
changes are not validated with ``haproxy -c`` (16–22 s at 10,000 certificates): every bundle was
already loaded by OpenSSL when the agent received it (``app.agent.tlscheck``), HAProxy refuses a
bad one in ``set ssl cert`` (the step fails and the change is rolled back), and the pipeline
verifies by handshake afterwards. ``validate_always = true`` runs ``haproxy -c`` on every change.
More than ``runtime_max_changes`` (500) names to add or move at once (a first full document) are
applied by a seamless reload instead: one reload loads them faster than thousands of commands.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from pathlib import Path

from app.agent.backends.base import Backend, BundleRef, Rendered, StepError, View
from app.agent.backends.haproxy_issuers import Issuers, split_leaf
from app.agent.backends.haproxy_runtime import CrtListEntry, MasterCli, Runtime, RuntimeApiError
from app.agent.backends.section import ConfigError
from app.agent.fsutil import secure_directory

CRT_SHARDS = 16  # crt-lists after the default one: two words each on the bind line (of 64)
_HEADER = "# written by the certpost agent; do not edit\n"

log = logging.getLogger("certpost.agent")

# The default line's SNI filter: a name no client sends, so the first line only makes its
# certificate the default and adds no SNI entry that could shadow a bound name.
DEFAULT_FILTER = "certpost-default.invalid"

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+|\*|[A-Za-z0-9.-]*):(\d{1,5})$")


def _listeners(value) -> list[tuple[str, str]]:
    """``listeners = [{bind = "0.0.0.0:993", server = "127.0.0.1:10993"}, …]`` → pairs."""
    if not isinstance(value, list) or not value:
        raise ConfigError("[haproxy] listeners must be a non-empty list of {bind, server} tables")
    pairs, ports = [], set()
    for item in value:
        if not isinstance(item, dict) or set(item) != {"bind", "server"}:
            raise ConfigError("[haproxy] listeners: each is {bind = \"ADDR:PORT\", server = \"ADDR:PORT\"}")
        for key in ("bind", "server"):
            if not isinstance(item[key], str) or not _ADDRESS.match(item[key]):
                raise ConfigError(f"[haproxy] listeners: {key} must be ADDRESS:PORT")
        port = item["bind"].rsplit(":", 1)[1]
        if port in ports:
            # The frontend routes by destination port: two listeners on one port are ambiguous.
            raise ConfigError(f"[haproxy] listeners: port {port} appears twice")
        ports.add(port)
        pairs.append((item["bind"], item["server"]))
    return pairs


def _path(value, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"[haproxy] {key} is required (a path)")
    return Path(value)


class _CrtList:
    """The crt-lists of the last render: a line per mail name, kept so that the next render
    changes only the lines of the names that differ (the view's named changes, or else a
    symmetric difference of the two name maps, in C), joins again only the lists holding them
    and sorts a list again only when names were added to it or removed. ``changed`` holds the
    names the last update changed."""

    def __init__(self, backend: HaproxyBackend) -> None:
        self.backend = backend
        self.mail: dict[str, str] = {}
        self.view: int | None = None  # the token of the view last rendered
        self.lines: dict[str, str] = {}
        self.members: dict[Path, set[str]] = {p: set() for p in backend.crt_shards}
        self.order: dict[Path, list[str]] = {p: [] for p in backend.crt_shards}
        self.wanted: dict[str, str] = {}  # name -> bundle path, as the lists say
        self.counts: Counter[str] = Counter()
        self.paths: dict[Path, str] = {}  # bundle path -> fingerprint (Rendered.bundles)
        self.added: dict[Path, str] = {}
        self.dropped: set[Path] = set()
        self.changed: set[str] = set()
        self.listings: dict[Path, bytes] | None = None  # every list file -> its content

    def update(self, view: View) -> tuple[dict[Path, bytes], dict[str, str]]:
        backend, mail, old = self.backend, view.mail, self.mail
        named = view.changes_since(self.view, "mail")
        self.view = view.token
        self.added, self.dropped, self.changed = {}, set(), set()
        if named is None:
            if old == mail and self.listings is not None:
                self.mail = mail
                return self.listings, self.wanted
            named = {name for name, _ in old.items() ^ mail.items()}
        touched: set[Path] = set()
        moved: set[Path] = set()
        for name in named:
            before, after = old.get(name), mail.get(name)
            if before == after:
                continue
            self.changed.add(name)
            shard = backend.list_of(name)
            touched.add(shard)
            if before is None or after is None:
                moved.add(shard)
            if before is not None:
                self.counts[before] -= 1
                if self.counts[before] <= 0:
                    del self.counts[before]
                    path = backend.bundle_path(before)
                    self.paths.pop(path, None)
                    self.added.pop(path, None)
                    self.dropped.add(path)
                del self.lines[name], self.wanted[name]
                self.members[shard].discard(name)
            if after is not None:
                path = backend.bundle_path(after)
                self.counts[after] += 1
                if path not in self.paths:
                    self.paths[path] = after
                    self.added[path] = after
                    self.dropped.discard(path)
                self.wanted[name] = text = str(path)
                self.lines[name] = f"{text} {name}\n"
                self.members[shard].add(name)
        if self.listings is None:
            self.listings = {
                backend.crt_list: f"{_HEADER}{backend.default_bundle} {DEFAULT_FILTER}\n".encode()
            }
            touched = moved = set(backend.crt_shards)
        for shard in moved:
            self.order[shard] = sorted(self.members[shard])
        listings = dict(self.listings)  # a new dict: the previous render's stays as it was
        for shard in touched:
            listings[shard] = "".join([_HEADER, *map(self.lines.__getitem__, self.order[shard])]).encode()
        self.listings = listings
        self.mail = mail  # the view's map is kept, never changed
        return self.listings, self.wanted


class HaproxyBackend(Backend):
    name = "haproxy"

    @classmethod
    def default_commands(cls, main, raw):
        conf = str(main or "/etc/haproxy/haproxy.cfg")
        # The reload goes through the master CLI (reload()); no command is run for it.
        return ["haproxy", "-c", "-f", conf, "-f", "{config}"], []

    def __init__(self, config, options=None):
        super().__init__(config, options)
        opts = {**config.options, **(options or {})}
        self.listeners = _listeners(opts.get("listeners"))
        self.runtime = Runtime(_path(opts.get("runtime_socket"), "runtime_socket"))
        master = opts.get("master_socket")
        self.master = MasterCli(_path(master, "master_socket")) if master is not None else None
        self.server_options = str(opts.get("server_options") or "send-proxy-v2-ssl")
        if any(c in self.server_options for c in "\n#"):
            raise ConfigError("[haproxy] server_options: one line, no comments")
        self.reload_timeout = float(opts.get("reload_timeout") or 300)
        self.validate_always = bool(opts.get("validate_always", False))
        # Above this many names to add or move, a seamless reload is cheaper than one runtime
        # command sequence per name (a first full document, a restore after an outage).
        self.runtime_max_changes = int(opts.get("runtime_max_changes") or 500)
        # A ``set ssl cert`` payload must fit in one HAProxy buffer (``tune.bufsize``, 16384 by
        # default; management.txt 9.3): a larger bundle (a long chain, RSA-4096 with many SANs)
        # gets an empty reply, which would fail the whole change for every name on the server.
        # Such a bundle is loaded by a seamless reload instead, which reads it from its file.
        self.runtime_payload_max = int(opts.get("runtime_payload_max") or 15000)
        self.config_file = self.directory / "certpost.cfg"
        self.crt_list = self.directory / "certpost.crtlist"  # the default line
        self.crt_shards = [self.directory / f"certpost.crtlist.{i:x}" for i in range(CRT_SHARDS)]
        self.crt_lists = frozenset([self.crt_list, *self.crt_shards])
        self._list_of: dict[str, Path] = {}  # name -> its list, memoized
        self.default_bundle = self.directory / "default.pem"
        self.issuers = Issuers(self.directory / "issuers")
        # What the running HAProxy holds: {SNI filter: entry}, read from the runtime API after
        # a start or reload, then kept in step with every command sent.
        self._running: dict[str, CrtListEntry] | None = None
        # (every list file's content, wanted) of the last render
        self._rendered_list: tuple[dict[Path, bytes], dict[str, str]] | None = None
        self._list: _CrtList | None = None  # the last render, kept to render the next by its changes
        self._config: bytes | None = None
        # The names rendered with another line since the running list was last brought to the
        # live file, and how many running lines name each path: the next update then looks
        # only at those names (None: compare every name, after a start, reload, error or
        # rollback).
        self._synced: set[str] | None = None
        self._path_counts: Counter[str] = Counter()
        self._renders = 0

    # -- rendering -------------------------------------------------------------------------
    def ensure_directories(self) -> None:
        super().ensure_directories()
        secure_directory(self.issuers.directory, self.config.bundle_group)

    def bundle_bytes(self, key_pem: bytes, certs_pem: bytes) -> bytes:
        """Key and leaf only when the chain is shared through ``issuers/`` (one copy in
        HAProxy's memory for every certificate of that issuer); key, leaf and chain otherwise."""
        leaf, chain = split_leaf(certs_pem)
        if self.issuers.share(leaf, chain, *self.file_mode()):
            return key_pem + leaf
        return key_pem + certs_pem

    def list_of(self, name: str) -> Path:
        """The crt-list of a name's line: the first hex digit of the name's SHA-256."""
        path = self._list_of.get(name)
        if path is None:
            if len(self._list_of) > 200_000:
                self._list_of.clear()
            digit = int(hashlib.sha256(name.encode()).hexdigest()[0], 16)
            path = self._list_of[name] = self.crt_shards[digit * CRT_SHARDS // 16]
        return path

    def render_config(self, lists: dict[Path, Path] | None = None) -> bytes:
        """certpost.cfg; ``lists``: another file to name instead of a list (the check copy)."""
        named = " ".join(
            f"crt-list {(lists or {}).get(p, p)}" for p in (self.crt_list, *self.crt_shards)
        )
        lines = [
            "# written by the certpost agent; do not edit\n",
            # Loaded before the bind line below reads the crt-list (HAProxy applies a global
            # section as it parses it; several global sections are allowed).
            "global\n",
            f"    issuers-chain-path {self.issuers.directory}\n",
            "frontend certpost_tls\n",
            "    mode tcp\n",
            f"    bind {','.join(b for b, _ in self.listeners)} ssl {named}\n",
        ]
        for bind, _ in self.listeners:
            port = bind.rsplit(":", 1)[1]
            lines.append(f"    use_backend certpost_{port} if {{ dst_port {port} }}\n")
        for bind, server in self.listeners:
            port = bind.rsplit(":", 1)[1]
            lines += [
                f"backend certpost_{port}\n",
                "    mode tcp\n",
                f"    server dovecot {server} {self.server_options}\n",
            ]
        return "".join(lines).encode()

    def render(self, view: View) -> Rendered:
        rendered = Rendered()
        rendered.files[self.default_bundle] = BundleRef(view.server_certificate)
        fresh = self._list is None
        if self._list is None:
            self._list = _CrtList(self)
        listings, wanted = self._list.update(view)
        rendered.bundles = self._list.paths  # the list's own: valid until the next render
        rendered.files.update(listings)
        self._rendered_list = (listings, wanted)
        if self._synced is not None:
            self._synced |= self._list.changed
        self._renders += 1
        rendered.base, rendered.token = self._renders - 1, self._renders
        if not fresh:
            rendered.added, rendered.dropped = self._list.added, self._list.dropped
        if self._config is None:
            self._config = self.render_config()
        rendered.files[self.config_file] = self._config
        return rendered

    # -- validation ------------------------------------------------------------------------
    async def validate(self, staged: dict[Path, Path]) -> None:
        if self.config_file not in staged and not self.validate_always:
            return
        if not self.config.validate:
            return
        # A check copy of certpost.cfg naming the staged lists, the default one a copy whose
        # line names the staged default bundle: HAProxy loads exactly what would go live.
        listing = staged.get(self.crt_list, self.crt_list)
        check_list = self.directory / ".certpost.crtlist.certpost-check"
        check_config = self.directory / ".certpost.cfg.certpost-check"
        try:
            text = listing.read_text()
            if self.default_bundle in staged:
                text = text.replace(str(self.default_bundle), str(staged[self.default_bundle]), 1)
            check_list.write_text(text)
            os.chmod(check_list, 0o600)
            lists = {p: staged[p] for p in self.crt_shards if p in staged}
            check_config.write_bytes(self.render_config({**lists, self.crt_list: check_list}))
            os.chmod(check_config, 0o600)
            await self.run_validate_command(check_config)
        finally:
            check_list.unlink(missing_ok=True)
            check_config.unlink(missing_ok=True)

    def missing_files(self) -> bool:
        """True when ``[haproxy]`` was added to an agent that already applied documents: the
        bootstrap (``--prepare-only``) then writes the front's files before HAProxy starts."""
        return not all(p.exists() for p in (self.config_file, *self.crt_lists, self.default_bundle))

    # -- reload or runtime -------------------------------------------------------------------
    def needs_reload(self, changed: set[Path]) -> bool:
        return self.config_file in changed

    async def reload(self) -> None:
        try:
            if self.master is not None:
                await self.master.reload(self.reload_timeout)
            else:
                await super().reload()
        except RuntimeApiError as exc:
            raise StepError("reload", self.name, str(exc)) from None
        finally:
            self._running = self._synced = None  # the new worker read the files: ask it again

    async def apply_runtime(self, changed: set[Path], *, restored: bool = False) -> None:
        """Bring the running HAProxy to the live files through the runtime API (no reload)."""
        try:
            if self.default_bundle in changed and self._too_big(self.default_bundle):
                await self.reload()
                return
            if self.default_bundle in changed:
                await self.runtime.load_cert(
                    str(self.default_bundle), self._payload(self.default_bundle), new=False
                )
            if not changed.isdisjoint(self.crt_lists):
                await self._apply_crt_list(restored)
        except StepError:
            raise
        except (RuntimeApiError, OSError) as exc:
            self._running = self._synced = None  # unsure what is live now: read it again next time
            raise StepError("reload", self.name, f"runtime API: {exc}") from None

    def _wanted(self, restored: bool = False) -> dict[str, str]:
        """{name: bundle path} of the live crt-lists: from the last render when the live files
        are that render (a change), parsed otherwise (the files a rollback ``restored``)."""
        if not restored and self._rendered_list is not None:
            return self._rendered_list[1]
        datas = {p: p.read_bytes() for p in sorted(self.crt_lists) if p.exists()}
        if self._rendered_list is not None and all(
            self._rendered_list[0].get(p) == data for p, data in datas.items()
        ):
            return self._rendered_list[1]
        wanted: dict[str, str] = {}
        for data in datas.values():
            for line in data.decode().splitlines():
                if line and not line.startswith("#"):
                    path, _, name = line.partition(" ")
                    if name != DEFAULT_FILTER:
                        wanted[name] = path
        return wanted

    async def _apply_crt_list(self, restored: bool = False) -> None:
        if self._running is None:
            listed = await self.runtime.crt_list(self.crt_list)  # unreachable: the step fails
            try:
                listed += [e for p in self.crt_shards for e in await self.runtime.crt_list(p)]
            except RuntimeApiError as exc:
                if self.master is None and not self.config.reload:
                    raise
                # A process started from the files of a version with one crt-list (an
                # upgrade whose bootstrap wrote the new files while HAProxy ran): it does not
                # know the split lists, so it reads them in a seamless reload.
                log.info("haproxy: %s; reloading to read the crt-lists", exc)
                await self.reload()
                return
            self._running = {e.filters[0]: e for e in listed}
            self._path_counts = Counter(e.path for e in self._running.values())
            self._synced = None
        running, counts = self._running, self._path_counts
        wanted = self._wanted(restored)
        if self._synced is not None and not restored:
            names = self._synced  # a change: only the names rendered anew since the last update
        else:
            names = set(wanted) | (running.keys() - {DEFAULT_FILTER})
        self._synced = None  # until this update has finished
        moving = sorted(n for n in names if n in wanted and ((e := running.get(n)) is None or e.path != wanted[n]))
        if len(moving) > self.runtime_max_changes and self.master is not None:
            await self.reload()  # the new worker loads the persisted files
            return
        if any(counts[p] == 0 and self._too_big(Path(p)) for p in {wanted[n] for n in moving}):
            await self.reload()  # the new worker loads the persisted files, big bundles included
            return
        added: dict[str, str] = {}
        touched: set[str] = set()
        for name in moving:
            path = wanted[name]
            if counts[path] == 0 and path not in touched:
                await self.runtime.load_cert(path, self._payload(Path(path)), new=True)
                touched.add(path)
            # Added before the old line is deleted: HAProxy keeps serving the old entry while
            # both exist (measured), so the name never falls back to the default meanwhile.
            await self.runtime.add_line(self.list_of(name), path, name)
            added[name] = path
        stale = [n for n in names if n != DEFAULT_FILTER and n in running and wanted.get(n) != running[n].path]
        for name in sorted(stale):
            entry = running.pop(name)
            counts[entry.path] -= 1
            touched.add(entry.path)
            shared = entry.path in added.values() or counts[entry.path] > 0
            # A file on several lines is deleted by line number, which only HAProxy knows.
            line = await self._line_of(name, entry.path) if shared else None
            await self.runtime.delete_line(self.list_of(name), entry.path, line)
        for name, path in added.items():
            running[name] = CrtListEntry(path, None, (name,))
            counts[path] += 1
        for path in sorted(touched):
            if counts[path] <= 0:
                counts.pop(path, None)
                await self.runtime.delete_cert(path)
        # Brought to the live file: a restored one is not the last render, whose changes
        # would then be missed, so after a rollback the next update compares every name.
        self._synced = None if restored else set()

    def _payload(self, path: Path) -> bytes:
        return self.issuers.payload(path.read_bytes())

    def _too_big(self, path: Path) -> bool:
        return len(self._payload(path)) > self.runtime_payload_max

    async def _line_of(self, name: str, path: str) -> int:
        for entry in await self.runtime.crt_list(self.list_of(name)):
            if entry.path == path and entry.filters[:1] == (name,):
                return entry.line
        raise RuntimeApiError(f"{path} {name} is not in the running crt-list")
