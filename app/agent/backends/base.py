"""The small interface every daemon backend implements, and what they share.

A backend turns the desired configuration into files (``render``), checks staged files with
the daemon's own tool (``validate``), says whether a change needs a reload, reloads, and names
the ports to verify. Writing, switching and rolling back files is generic (``app.agent.apply``),
so each backend only knows its daemon's syntax and commands.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.agent.backends.section import BackendConfig, VerifyTarget
from app.agent.fsutil import secure_directory, secure_file

STAGED_SUFFIX = ".certpost-new"
BACKUP_SUFFIX = ".certpost-old"


class StepError(Exception):
    """A pipeline step failed; ``message`` is the daemon's own words where there are any."""

    def __init__(self, step: str, daemon: str, message: str) -> None:
        super().__init__(f"{step} ({daemon}): {message}")
        self.step = step
        self.daemon = daemon
        self.message = message


@dataclass(frozen=True)
class BundleRef:
    """File content that is a bundle copy (resolved by the pipeline, which holds the keys)."""

    fingerprint: str


@dataclass
class Rendered:
    """Files one backend wants live.

    ``files`` are small configuration files, switched atomically and rolled back as a set.
    ``bundles`` maps a bundle copy's path to the fingerprint it holds; a path never changes
    content, so a copy is written once, before the switch, and pruned after a success.
    ``remove`` are live files of the backend's own that must go in the switch (kept as a
    backup link until success, restored on rollback), e.g. Courier's file of an unbound name.
    """

    files: dict[Path, bytes | BundleRef] = field(default_factory=dict)
    bundles: dict[Path, str] = field(default_factory=dict)
    remove: list[Path] = field(default_factory=list)
    # Optional, for a backend with thousands of files (nginx's by-name bundles): this render's
    # number, the number of the backend's previous render, and the files whose content may
    # differ from that one's. The pipeline then looks only at ``changed`` when the previous
    # render is the one it last applied successfully; otherwise at every file.
    # Every backend may set these, and then also ``added`` and ``dropped``: the bundle copies
    # this render names that the previous did not, and those it no longer names, so that
    # staging and pruning look at those alone instead of 20,000 paths. ``bundles`` may be the
    # backend's own dict, valid until its next render.
    token: int | None = None
    base: int | None = None
    changed: set[Path] | None = None
    added: dict[Path, str] | None = None
    dropped: set[Path] | None = None


_TOKENS = itertools.count(1)


def new_token() -> int:
    """A number no other view of this process has (:attr:`View.token`)."""
    return next(_TOKENS)


@dataclass(frozen=True)
class View:
    """The part of the desired configuration a backend renders from (no key material).

    Views are never changed once made; their maps may be shared with the agent's state.
    ``token`` names this view; ``base`` and ``changed`` say, when known, that it was made from
    the view numbered ``base`` by changing only the names ``changed`` lists per map (``mail``,
    ``webmail``, ``autoconfig``; a superset is fine, the scalars may differ too). A backend
    whose last render was of view ``base`` then renders this one by those names alone, instead
    of comparing two maps of 10,000 names (a delta document carries its changed names this way:
    app.agent.service). ``changed`` None: compare everything.
    """

    server_certificate: str
    webmail_default: str
    mail: dict[str, str]
    webmail: dict[str, str]
    # The server's own host name: HTTPS presents ``webmail_default`` for it (verified by
    # handshake, app.agent.verify); no backend writes it into a file.
    server_hostname: str = ""
    # Mail client autoconfiguration: domain -> the host name clients are told to use
    # (app.agent.backends.nginx_autoconfig); only nginx renders it.
    autoconfig: dict[str, str] = field(default_factory=dict)
    token: int = field(default_factory=new_token, compare=False)
    base: int | None = field(default=None, compare=False)
    changed: Mapping[str, frozenset[str] | set[str]] | None = field(
        default=None, compare=False, repr=False
    )

    def changes_since(self, token: int | None, service: str) -> frozenset[str] | set[str] | None:
        """The names of map ``service`` that may differ from view ``token``; None when unknown
        (this view was not made from that one by named changes)."""
        if token is None or self.base != token or self.changed is None:
            return None
        return self.changed.get(service, frozenset())


def staged_path(live: Path) -> Path:
    return live.with_name(f".{live.name}{STAGED_SUFFIX}")


async def run(
    argv: tuple[str, ...] | list[str], *, umask: int | None = None, timeout: float = 120
) -> tuple[int, str]:
    """Run a command without a shell; return (exit status, stdout+stderr as text).

    Output is kept because it is the daemon's own diagnosis; callers send validation output
    that may contain key material (``doveconf -x``) to /dev/null instead.
    """
    kwargs = {"umask": umask} if umask is not None else {}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, **kwargs
        )
    except OSError as exc:
        return 127, f"{argv[0]}: {exc}"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"{argv[0]} did not finish within {timeout} s"
    return proc.returncode, out.decode(errors="replace").strip()


class Backend:
    """Base class; subclasses set ``name`` and implement ``render`` and ``validate``.

    ``name`` is also the backend's section in the agent's configuration file; a new backend is
    this class's subclass in its own module plus one entry in :mod:`app.agent.backends.registry`.
    """

    name = ""
    # Who reads the bundle copies besides root, as Debian packages the daemon (``bundle_group``
    # when the section does not say): None when the daemon loads keys as root.
    default_bundle_group: str | None = None

    @classmethod
    def default_commands(cls, main: Path | None, raw: dict) -> tuple[list[str], list[str]]:
        """The stock (validate, reload) commands; ``{config}`` becomes the config being checked.

        ``main`` is the section's ``main_config``, ``raw`` the section as read from TOML.
        """
        return [], []

    def __init__(self, config: BackendConfig, options: dict | None = None) -> None:
        self.config = config
        self.directory = config.directory
        self.bundle_dir = config.directory / "bundles"
        self._bundle_paths: dict[str, Path] = {}

    # -- ownership -------------------------------------------------------------------------
    def file_mode(self) -> tuple[int, str | None]:
        """(mode, group) of every file written in ``directory``: 0640 root:<bundle_group>, or
        0600 root. The group is the daemon's unprivileged user that opens keys itself."""
        group = self.config.bundle_group
        return (0o640, group) if group else (0o600, None)

    def ensure_directories(self) -> None:
        """``directory`` and ``bundles/`` as 0750 root:<bundle_group> (0700 root without one),
        whether the agent or the operator created them; see :mod:`app.agent.fsutil`."""
        group = self.config.bundle_group
        secure_directory(self.directory, group)
        secure_directory(self.bundle_dir, group)

    def secure_existing(self, copies) -> None:
        """Bring files found on disk to :meth:`file_mode`: the bundle ``copies`` and the files
        directly in ``directory`` (include files, Postfix's ``default.pem`` and tables).

        Called once per process, at the first apply: they may come from an earlier run under
        another ``bundle_group``, or from an operator; everything written afterwards gets the
        mode when it is written.
        """
        mode, group = self.file_mode()
        own: list[Path] = []
        if self.directory.is_dir():
            with os.scandir(self.directory) as entries:
                own = [Path(e.path) for e in entries if e.is_file(follow_symlinks=False)]
        for path in [*copies, *own]:
            try:
                secure_file(path, mode, group)
            except FileNotFoundError:
                pass

    # -- rendering -------------------------------------------------------------------------
    def bundle_file_name(self, fingerprint: str) -> str:
        return f"{fingerprint}.pem"

    def bundle_path(self, fingerprint: str) -> Path:
        # Memoized: building 10,000 Path objects per render costs more than the rest of it.
        path = self._bundle_paths.get(fingerprint)
        if path is None:
            if len(self._bundle_paths) > 200_000:
                self._bundle_paths.clear()
            path = self._bundle_paths[fingerprint] = self.bundle_dir / self.bundle_file_name(
                fingerprint
            )
        return path

    def bundle_bytes(self, key_pem: bytes, certs_pem: bytes) -> bytes:
        """Content of a bundle copy: key first, then leaf and chain."""
        return key_pem + certs_pem

    async def prepare(self, live: bool) -> None:
        """Before rendering: read what the daemon's own configuration says the files must be
        (Postfix: which shard layout main.cf lists); raise StepError (step ``validate``) when a
        ``live`` apply cannot go on. Nothing is staged yet."""

    def render(self, view: View) -> Rendered:
        raise NotImplementedError

    # -- validation ------------------------------------------------------------------------
    async def build(self, staged: dict[Path, Path]) -> dict[Path, Path]:
        """Derive files from staged ones (a Postfix table); return extra live->staged pairs."""
        return {}

    async def validate(self, staged: dict[Path, Path]) -> None:
        """Run the daemon's own check against the staged files; raise StepError."""

    def missing_files(self) -> bool:
        """True when a file the daemon's configuration names does not exist (an upgrade)."""
        return False

    def check_with_main_config(self, staged: dict[Path, Path]) -> Path:
        """A copy of the daemon's main config that includes the staged files instead of the live.

        Written beside the main config so relative includes still resolve; the live include
        path must appear verbatim in the main config, otherwise our files are not in use.
        """
        main = self.config.main_config
        if main is None:
            raise StepError(
                "validate", self.name, "main_config is not set in the agent configuration"
            )
        text = main.read_text()
        for live, stage in staged.items():
            if str(live) not in text:
                raise StepError("validate", self.name, f"{main} does not include {live}")
            text = text.replace(str(live), str(stage))
        check = main.with_name(f".{main.name}.certpost-check")
        check.write_text(text)
        os.chmod(check, 0o600)
        return check

    async def run_validate_command(self, config_path: Path | None) -> None:
        if not self.config.validate:
            return
        argv = [
            a.replace("{config}", str(config_path or self.config.main_config))
            for a in self.config.validate
        ]
        status, output = await run(argv)
        if status != 0:
            raise StepError("validate", self.name, output or f"{argv[0]} exited with {status}")

    # -- reload and verify -----------------------------------------------------------------
    def needs_reload(self, changed: set[Path]) -> bool:
        return bool(changed)

    async def apply_runtime(self, changed: set[Path], *, restored: bool = False) -> None:
        """Make the running daemon serve the switched ``changed`` files without a reload.

        Called instead of :meth:`reload` when :meth:`needs_reload` says no, and again after a
        rollback restored the files (``restored``: they are not the last render's). Most daemons read changed files by themselves (Postfix
        tables, nginx and Courier bundles opened per handshake): nothing to do.
        """

    async def reload(self) -> None:
        if not self.config.reload:
            return
        status, output = await run(self.config.reload)
        if status != 0:
            raise StepError(
                "reload", self.name, output or f"{self.config.reload[0]} exited with {status}"
            )

    def verify_targets(self) -> tuple[VerifyTarget, ...]:
        return self.config.verify

    def serves_mail(self) -> bool:
        return self.name != "nginx"

    def per_name_sni(self) -> bool:
        """False when the daemon presents its default certificate to every name (Dovecot
        behind a TLS front): verification then expects the default for bound names too."""
        return True

    def log_position(self) -> int:
        try:
            return self.config.log_file.stat().st_size if self.config.log_file else 0
        except FileNotFoundError:
            return 0

    def log_since(self, position: int, limit: int = 5) -> str:
        """The daemon's own complaints since ``position`` in its log (errors and warnings)."""
        if not self.config.log_file:
            return ""
        try:
            with open(self.config.log_file, "rb") as log:
                log.seek(position)
                lines = log.read(1 << 20).decode(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        words = ("error", "fatal", "panic", "warning", "emerg", "crit")
        hits = [line for line in lines if any(w in line.lower() for w in words)]
        return "\n".join(hits[-limit:])
