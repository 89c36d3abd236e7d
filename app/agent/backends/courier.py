"""Courier-IMAP 5 (Debian ``courier-imap``): one bundle file per SNI name beside ``TLS_CERTFILE``.

couriertls (imapd-ssl, and imapd's STARTTLS) serves ``$TLS_CERTFILE`` by default and, for a
client's SNI name ``n``, the file ``$TLS_CERTFILE.n`` next to it. Observed with the Debian 12
package (GnuTLS build), see docs/agent.md "Courier-IMAP":

* the name is looked up verbatim (case-sensitive: ``MAIL.A.TEST`` does not find
  ``….mail.a.test``), then with its leftmost label removed, again and again: ``x.mail.a.test``
  is served ``….mail.a.test``, and ``….a.test`` serves ``a.test`` itself and every name below
  it at any depth. The longest match wins. A name with a trailing dot matches nothing;
* a file literally named ``….*.a.test`` is never used (a client sending ``*.a.test`` gets the
  handshake aborted): a ``*.a.test`` binding is therefore written as ``….a.test``, which also
  answers the apex and deeper names (Dovecot and nginx match exactly one label there);
* the files are read on every connection: a replaced file is served on the next handshake, so
  nothing is ever reloaded (an optional ``reload`` command runs when a file changed);
* STARTTLS runs couriertls as the unprivileged ``courier`` user (imaplogin drops root first),
  so the files are 0640 and group-owned by ``bundle_group`` (default ``courier``); an unreadable
  file silently falls back to the default certificate on port 143 while port 993 (couriertls
  started as root) still serves it — the handshake verification catches that;
* key and certificates in one PEM file, in either order (GnuTLS); the agent writes key first.
  A file that does not parse aborts the handshake (no fallback).

Every bound name gets its own file, even one bound to the server-wide certificate: because of
the parent-domain fallback, a missing file would let ``mail.a.test`` inherit ``….a.test``.
Files of names no longer bound are removed in the switch (and restored on rollback).
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.agent.backends.base import Backend, BundleRef, Rendered, StepError, View
from app.agent.backends.section import ConfigError
from app.agent.fsutil import secure_directory


class CourierBackend(Backend):
    name = "courier"
    default_bundle_group = "courier"  # imaplogin runs STARTTLS as courier

    @classmethod
    def default_commands(cls, main, raw):
        return [], []  # couriertls reads the files on every connection: nothing to reload

    def __init__(self, config, options=None):
        super().__init__(config, options)
        opts = {**config.options, **(options or {})}
        self.certfile = Path(opts.get("certfile") or self.directory / "imapd.pem")
        if self.certfile.parent != self.directory:
            raise ConfigError("[courier] certfile must be a file directly in [courier] directory")
        self.conflicts: list[str] = []
        # The last render: its view (token, mail map), the names per file, each file's
        # content and conflicts (render()).
        self._view: int | None = None
        self._mail: dict[str, str] = {}
        self._by_file: dict[Path, dict[str, str]] = {}
        self._files: dict[Path, BundleRef] = {}
        self._conflicts: dict[Path, list[tuple]] = {}
        self._refs: dict[str, BundleRef] = {}
        self._renders = 0

    def file_for(self, name: str) -> Path:
        """``TLS_CERTFILE.<name>``; a ``*.a.test`` binding becomes ``TLS_CERTFILE.a.test``."""
        key = name.removeprefix("*.")
        return self.certfile.with_name(f"{self.certfile.name}.{key}")

    def owned_files(self) -> list[Path]:
        """Per-name files currently in the directory (staging and backup names start with '.')."""
        if not self.directory.is_dir():
            return []
        prefix = self.certfile.name + "."
        return [p for p in self.directory.iterdir() if p.name.startswith(prefix)]

    def ensure_directories(self) -> None:
        # Courier's files live directly in the directory: no bundles/ subdirectory.
        secure_directory(self.directory, self.config.bundle_group)

    def _ensure_directory(self) -> None:
        # The unprivileged courier user must traverse the directory for STARTTLS.
        self.ensure_directories()

    def render(self, view: View) -> Rendered:
        """The server-wide file and one file per bound name, kept from the previous render.

        Names that share a file (``*.a.test`` and ``a.test``) are kept per file; the exact name
        owns it (exact names after wildcards), and two names of one file with different
        certificates are a conflict (refused in validate). A view made from the one rendered
        last by named changes (``View.changes_since``) updates the files of those names only,
        removes only the files they leave unused and tells the pipeline which files changed;
        any other view is compared in full and the directory listed.
        """
        self._ensure_directory()
        rendered = Rendered()
        named = view.changes_since(self._view, "mail")
        if named is None:
            named = {n for n, _ in self._mail.items() ^ view.mail.items()}
            full = True
        else:
            full = False
        mail = view.mail
        touched: set[Path] = set()
        for name in named:
            before, after = self._mail.get(name), mail.get(name)
            if before == after:
                continue
            path = self.file_for(name)
            touched.add(path)
            sharing = self._by_file.setdefault(path, {})
            if after is None:
                sharing.pop(name, None)
            else:
                sharing[name] = after
        for path in touched:
            self._settle(path)
        self._mail, self._view = mail, view.token
        rendered.files = dict(self._files)
        rendered.files[self.certfile] = BundleRef(view.server_certificate)
        self.conflicts = [message for _, message in sorted(
            c for path in self._conflicts for c in self._conflicts[path])]
        self._renders += 1
        rendered.base, rendered.token = self._renders - 1, self._renders
        rendered.added, rendered.dropped = {}, set()  # no fingerprint-named copies
        if full:
            rendered.remove = [p for p in self.owned_files() if p not in rendered.files]
        else:
            rendered.changed = {self.certfile, *touched}
            rendered.remove = [p for p in touched if p not in rendered.files and p.exists()]
        return rendered

    def _settle(self, path: Path) -> None:
        """The file ``path`` after its names changed: its owner's certificate, and conflicts."""
        sharing = self._by_file.get(path) or {}
        self._conflicts.pop(path, None)
        if not sharing:
            self._by_file.pop(path, None)
            self._files.pop(path, None)
            return
        order = sorted(sharing, key=_order)
        owner, fp = order[0], sharing[order[0]]
        found = []
        for name in order[1:]:
            if sharing[name] != fp:
                found.append((_order(name), f"{owner} and {name}"))
            owner, fp = name, sharing[name]
        if found:
            self._conflicts[path] = found
        ref = self._refs.get(fp)
        if ref is None:
            if len(self._refs) > 200_000:
                self._refs.clear()
            ref = self._refs[fp] = BundleRef(fp)
        self._files[path] = ref

    async def validate(self, staged: dict[Path, Path]) -> None:
        if self.conflicts:
            raise StepError(
                "validate",
                self.name,
                "Courier serves one file for a name and its subdomains, so these bindings "
                "cannot have different certificates: " + "; ".join(self.conflicts),
            )
        for live, stage in staged.items():
            problem = _check_bundle(stage.read_bytes())
            if problem:
                raise StepError("validate", self.name, f"{live}: {problem}")

    def needs_reload(self, changed: set[Path]) -> bool:
        return bool(changed) and bool(self.config.reload)


def _order(name: str) -> tuple[bool, str]:
    """Wildcards first, then exact names: the last of a file's names owns it."""
    return (not name.startswith("*."), name)


def _check_bundle(data: bytes) -> str:
    """What couriertls needs: a private key and its certificate (chain) in one PEM file."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        return f"not a key and certificate PEM bundle ({exc})"
    if not certs:
        return "no certificate in the bundle"
    if certs[0].public_key().public_numbers() != key.public_key().public_numbers():
        return "the first certificate does not match the key"
    return ""
