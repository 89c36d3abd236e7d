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
        self._ensure_directory()
        rendered = Rendered()
        rendered.files[self.certfile] = BundleRef(view.server_certificate)
        self.conflicts = []
        chosen: dict[Path, tuple[str, str]] = {}
        # Exact names after wildcards, so an exact binding owns a shared file (a conflict with
        # different certificates is refused in validate).
        for name in sorted(view.mail, key=lambda n: (not n.startswith("*."), n)):
            fp, path = view.mail[name], self.file_for(name)
            if path in chosen and chosen[path][1] != fp:
                self.conflicts.append(f"{chosen[path][0]} and {name}")
            chosen[path] = (name, fp)
            rendered.files[path] = BundleRef(fp)
        rendered.remove = [p for p in self.owned_files() if p not in rendered.files]
        return rendered

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
