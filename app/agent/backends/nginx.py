"""nginx: ONE ``server`` block whose certificate is chosen per SNI name by a ``map``.

ngx_http_ssl_module: since 1.15.9 ``ssl_certificate`` and ``ssl_certificate_key`` accept
variables and then load the files at handshake time, and one file may hold both the key and the
certificate chain. The agent writes one file, included in the ``http`` block of nginx.conf:

    map $ssl_server_name $certpost_bundle { hostnames; default <bundle>; webmail.a.test <bundle>; }
    server { listen ... ssl; ssl_certificate $certpost_bundle; ssl_certificate_key $certpost_bundle; ... }

(ngx_http_map_module: ``hostnames`` allows ``*.a.test`` masks; unknown names, and clients that
send no SNI, get ``default``). Each ``<bundle>`` is NAME-addressed, ``bundles/by-name/<name>.pem``
(see :meth:`NginxBackend.name_path`), replaced by rename(2): nginx loads variable certificates
at every handshake with no cache, so a new certificate for a name already in the map is one file
replaced, served by the next handshake, with no ``nginx -t`` and no reload; only a changed map
(names added or removed) is validated and reloaded. The pipeline switches these files like
configuration files (backup link, restored on rollback). One block instead of one per domain keeps ``nginx -t`` and reloads
in milliseconds at 10,000 names. Because files are loaded at handshake time, the WORKER user
reads the bundles: ``bundle_group`` makes the copies 0640 and owned by that group.
``nginx -t`` cannot check certificates given by variables; the pipeline checked every bundle on
receipt and verifies by handshake after ``nginx -s reload``.

With ``http_listen`` set, the file also has a plain-HTTP ``default_server`` block that answers
HTTP-01 challenges (RFC 8555 section 8.3) for any Host from ``<directory>/acme-challenge/``
(written by ``app.agent.challenges``, read per request: no reload) and 404 for everything else.

``nginx -s reload`` only signals the master: it returns before the master has read the new
configuration, and the old workers keep accepting connections until they take their QUIT. An
old worker reads the *old* map, whose bundles the agent deletes once a change is verified, and
answers a handshake for such a name with an internal-error alert. So the reload here waits until
every worker that accepted before it has retired ("worker process is shutting down" in its title:
ngx_worker_process_cycle sets it as it closes its listening sockets) or exited; only then do the
verify probes, and later every client, meet the new configuration alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import string
import time
from pathlib import Path

from app.agent.backends import nginx_autoconfig
from app.agent.backends.base import Backend, BundleRef, Rendered, View
from app.agent.backends.section import ConfigError
from app.agent.challenges import DIRECTORY_NAME
from app.agent.fsutil import secure_directory
from app.kit import x509 as kx
from app.kit.mailclients import autoconfig_names

_SAFE = frozenset(string.ascii_lowercase + string.digits + ".-")
# NAME_MAX is 255: room for ".pem" and the pipeline's ".<file>.certpost-new" staging name.
MAX_STEM = 200


def _addresses(value, key: str) -> list[str]:
    """A listen address or a list of them (``"0.0.0.0:80"``, ``["0.0.0.0:80", "[::]:80"]``)."""
    if not value:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ConfigError(f"{key} must be a string or a list of strings")
    if any(c in i for i in items for c in ";{}\n"):
        raise ConfigError(f"{key}: an address cannot contain ';', '{{', '}}' or a newline")
    return list(items)


PID_DIRECTIVE = re.compile(rb"^[ \t]*pid[ \t]+([^;\s]+)[ \t]*;", re.MULTILINE)
DEBIAN_PID_FILE = Path("/run/nginx.pid")  # Debian's --pid-path, when nginx.conf names none
RETIRE_TIMEOUT = 15.0


def master_pid(main_config: Path | None) -> int | None:
    """The running master's PID, from the pid file nginx.conf names (Debian's default if none)."""
    pid_file = DEBIAN_PID_FILE
    if main_config is not None:
        try:
            found = PID_DIRECTIVE.search(main_config.read_bytes())
        except OSError:
            found = None
        if found:
            pid_file = Path(found.group(1).decode())
            if not pid_file.is_absolute():  # relative to the prefix: the config's directory, usually
                pid_file = main_config.parent / pid_file
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def accepting_workers(master: int) -> set[int]:
    """PIDs of ``master``'s workers that still accept connections (not yet shutting down)."""
    workers = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent != master:
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        if title.startswith(b"nginx: worker process") and b"shutting down" not in title:
            workers.add(int(entry.name))
    return workers


async def wait_retired(master: int, old: set[int], timeout: float = RETIRE_TIMEOUT) -> bool:
    """Wait until none of ``old`` accepts any more; False if some still did at ``timeout`` (the
    master kept them: the new configuration failed to start, which the verify probes then show)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while old & await asyncio.to_thread(accepting_workers, master):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
    return True


class NginxBackend(Backend):
    name = "nginx"
    default_bundle_group = "www-data"  # workers open the bundles at handshake time

    @classmethod
    def default_commands(cls, main, raw):
        conf = str(main or "/etc/nginx/nginx.conf")
        return ["nginx", "-t", "-q", "-c", "{config}"], ["nginx", "-c", conf, "-s", "reload"]

    def __init__(self, config, options=None):
        super().__init__(config, options)
        opts = {**config.options, **(options or {})}
        self.include_file = self.directory / "certpost.conf"
        self.listen = [str(x) for x in opts.get("listen", [])]
        self.upstream = opts.get("upstream") or ""
        self.server_extra = opts.get("server_extra") or ""
        self.http_listen = _addresses(opts.get("http_listen"), "[nginx] http_listen")
        self.challenge_dir = self.directory / DIRECTORY_NAME
        # Mail client autoconfiguration (nginx_autoconfig): on unless ``autoconfig = false``.
        self.autoconfig = opts.get("autoconfig", True)
        if not isinstance(self.autoconfig, bool):
            raise ConfigError("[nginx] autoconfig must be true or false")
        self.by_name_dir = self.bundle_dir / "by-name"
        self.key_only = bool(opts.get("key_only", False))  # test hook (app.agent.config)
        self._default_fp = ""
        self._owned: set[Path] | None = None  # name-addressed files this process knows of
        self._name_paths: dict[str | None, Path] = {}
        self._bundle_refs: dict[str, BundleRef] = {}
        # (names, autoconfig, bytes) of the last rendered include file (render()).
        self._render_count = 0
        # (webmail map, {by-name path: BundleRef}) of the last render (_name_bundles).
        self._entries: tuple[dict[str, str], dict[Path, BundleRef]] = ({}, {})
        self._include: tuple[set[str], dict[str, str], bytes] | None = None
        self._view: int | None = None  # the token of the view last rendered
        # (names added or removed, autoconfig changed) by the last render's named changes;
        # None when they were not named (compare the maps).
        self._moved: tuple[bool, bool] | None = None

    def serves_mail(self) -> bool:
        return False

    def render(self, view: View) -> Rendered:
        rendered = Rendered()
        default = self._name_bundles(view, rendered)
        # The include file names files by host name, not by certificate: it depends only on the
        # set of names and the autoconfig map. A certificate change keeps both, so the bytes of
        # the previous render are returned as they are (the same object, which the pipeline
        # then knows is live) instead of rendering and comparing 1.5 MB at 10,000 names.
        cached, moved = self._include, self._moved
        if cached is not None and (
            (moved is not None and not any(moved))
            or (moved is None and cached[0] == view.webmail.keys() and cached[1] == view.autoconfig)
        ):
            rendered.files[self.include_file] = cached[2]
            self._include = (cached[0], view.autoconfig, cached[2])
            return rendered
        lines = [
            "# written by the certpost agent; do not edit\n",
            "map $ssl_server_name $certpost_bundle {\n    hostnames;\n",
            f"    default {default};\n",
        ]
        for name in sorted(view.webmail):
            path = self.name_path(name)
            lines.append(f"    {name} {path};\n")
            if self.autoconfig:  # autoconfig.<d>, autodiscover.<d>: the webmail certificate's file
                lines += [f"    {extra} {path};\n" for extra in autoconfig_names(name.split(".", 1)[1])]
        lines.append("}\n")
        if self.autoconfig and self.listen:
            lines += nginx_autoconfig.http_maps(view.autoconfig)
        if self.listen:
            lines.append("server {\n")
            lines += [f"    listen {addr} ssl;\n" for addr in self.listen]
            lines.append(
                "    ssl_certificate $certpost_bundle;\n    ssl_certificate_key $certpost_bundle;\n"
            )
            if self.server_extra:
                lines.append(f"    {self.server_extra}\n")
            if self.autoconfig:
                lines += nginx_autoconfig.locations()
            if self.upstream:
                lines.append(
                    "    location / {\n"
                    f"        proxy_pass {self.upstream};\n"
                    "        proxy_set_header Host $host;\n"
                    "        proxy_set_header X-Forwarded-Proto https;\n    }\n"
                )
            else:  # in a location: a server-level return would answer before any location
                lines.append('    location / {\n        return 200 "webmail\\n";\n    }\n')
            lines.append("}\n")
        if self.http_listen:
            lines.append("server {\n")
            lines += [f"    listen {addr} default_server;\n" for addr in self.http_listen]
            lines.append(
                "    server_name _;\n"
                "    location ^~ /.well-known/acme-challenge/ {\n"
                "        default_type application/octet-stream;\n"
                f"        alias {self.challenge_dir}/;\n"
                "    }\n"
                "    location / {\n        return 404;\n    }\n"
                "}\n"
            )
        text = rendered.files[self.include_file] = "".join(lines).encode()
        self._include = (set(view.webmail), view.autoconfig, text)
        return rendered

    # -- name-addressed bundles ----------------------------------------------------------
    def name_path(self, name: str | None) -> Path:
        """``bundles/by-name/<name>.pem``; None is the map's ``default``.

        Bytes outside ``[a-z0-9.-]`` become ``_xx`` (hex), so ``*.a.test`` is ``_2a.a.test.pem``
        and ``_default.pem`` (the default) can be no name's file: names are ASCII (IDNA
        A-labels, app.agent.desired), so ``_de`` is never produced by the escaping. A name
        longer than fits in a file name (255 bytes; host names reach 253 characters) becomes
        ``_h<SHA-256 of the name>``: ``h`` is no hex digit either.
        """
        path = self._name_paths.get(name)
        if path is not None:
            return path
        if len(self._name_paths) > 200_000:
            self._name_paths.clear()
        if name is None:
            stem = "_default"
        else:
            stem = "".join(c if c in _SAFE else f"_{ord(c):02x}" for c in name)
            if len(stem) > MAX_STEM:
                stem = "_h" + hashlib.sha256(name.encode()).hexdigest()
        # Memoized: building 10,000 Path objects per render costs more than the rest of it.
        path = self._name_paths[name] = self.by_name_dir / f"{stem}.pem"
        return path

    def _name_bundles(self, view: View, rendered: Rendered) -> Path:
        """Put one name-addressed bundle file per map entry into ``rendered.files``.

        The files are switched (kept as a backup link, restored on rollback) like the include
        file; the pipeline stages only those whose certificate changed. Files of names no
        longer in the map are removed in the switch: this process remembers the files it
        rendered (the directory is listed once), so a change stats only the names it drops.

        The entries are kept from the previous render and changed by the names whose
        certificate differs (a set operation on the two maps, in C), and ``rendered.changed``
        names the files that differ from the previous render, so that neither this nor the
        pipeline visits 10,000 entries for a one-domain change.
        """
        refs = self._bundle_refs
        if len(refs) > 200_000:
            refs.clear()
        default = self.name_path(None)
        self._default_fp = view.webmail_default
        kept, entries = self._entries
        changed = {default, self.include_file}
        name_path = self.name_path
        named = view.changes_since(self._view, "webmail")
        incremental = named is not None and self._owned is not None
        if named is None:
            named = {name for name, _ in kept.items() ^ view.webmail.items()}
        webmail = view.webmail
        dropped: list[Path] = []
        moved_names = False
        for name in named:
            fp = webmail.get(name)
            before = kept.get(name)
            if fp == before:
                continue
            path = name_path(name)
            changed.add(path)
            if fp is None:
                entries.pop(path, None)
                dropped.append(path)
                moved_names = True
                continue
            moved_names = moved_names or before is None
            ref = refs.get(fp)
            if ref is None:
                ref = refs[fp] = BundleRef(fp)
            entries[path] = ref
        if incremental:
            autoconfig_names_ = view.changes_since(self._view, "autoconfig") or ()
            before_auto = self._include[1] if self._include is not None else {}
            moved_auto = any(before_auto.get(n) != view.autoconfig.get(n) for n in autoconfig_names_)
            self._moved = (moved_names, moved_auto)
        else:
            self._moved = None
        self._entries = (webmail, entries)  # the view's map is kept, never changed
        self._view = view.token
        files = rendered.files
        files.update(entries)
        files[default] = BundleRef(view.webmail_default)
        self._render_count += 1
        rendered.base, rendered.token = self._render_count - 1, self._render_count
        rendered.changed = changed
        rendered.added, rendered.dropped = {}, set()  # no fingerprint-named copies
        if incremental:
            # Only the names this change dropped can leave files behind. They stay in _owned
            # (a rollback may put them back) until a full render finds them gone.
            rendered.remove = [p for p in dropped if p in self._owned and p.exists()]
            self._owned.update(p for p in changed if p in files)
            self._owned.discard(self.include_file)
            return default
        if self._owned is None:
            self._owned = set()
            if self.by_name_dir.is_dir():
                with os.scandir(self.by_name_dir) as entries_on_disk:
                    self._owned = {
                        Path(e.path) for e in entries_on_disk
                        if e.name.endswith(".pem") and not e.name.startswith(".")
                    }
        # In place, without a 10,000-element temporary: gone are those that no longer exist.
        dropped_all = self._owned.difference(files)
        rendered.remove = [p for p in dropped_all if p.exists()]
        self._owned.difference_update(dropped_all.difference(rendered.remove))
        self._owned.update(files)
        self._owned.discard(self.include_file)
        return default

    def bundle_bytes(self, key_pem: bytes, certs_pem: bytes) -> bytes:
        if self.key_only:  # test hook: the default's file gets the key without its certificate
            leaf = kx.load_pem_certificates(certs_pem)[0]
            if kx.fingerprint_sha256(leaf) == self._default_fp:
                return key_pem
        return key_pem + certs_pem

    def ensure_directories(self) -> None:
        super().ensure_directories()
        secure_directory(self.by_name_dir, self.config.bundle_group)

    def secure_existing(self, copies) -> None:
        """Also the name-addressed files, which may come from a run under another group."""
        files = []
        if self.by_name_dir.is_dir():
            with os.scandir(self.by_name_dir) as entries:
                files = [Path(e.path) for e in entries if e.is_file(follow_symlinks=False)]
        super().secure_existing([*copies, *files])

    def needs_reload(self, changed: set[Path]) -> bool:
        """Only a changed map or server block: workers open the bundle files at every
        handshake, so a replaced file is served by the next one without a reload."""
        return self.include_file in changed

    async def reload(self) -> None:
        """``nginx -s reload``, then wait for the workers that accepted before it to retire."""
        master = master_pid(self.config.main_config)
        old = await asyncio.to_thread(accepting_workers, master) if master else set()
        await super().reload()
        if old:
            await wait_retired(master, old)

    async def validate(self, staged: dict[Path, Path]) -> None:
        """``nginx -t`` on the include file when it changed. Bundle files alone need no check
        here: ``nginx -t`` cannot check certificates given by variables, and the pipeline
        checked every bundle on receipt (app.agent.bundles.build_bundle)."""
        if self.include_file not in staged:
            return
        check = self.check_with_main_config({self.include_file: staged[self.include_file]})
        try:
            await self.run_validate_command(check)
        finally:
            check.unlink(missing_ok=True)
