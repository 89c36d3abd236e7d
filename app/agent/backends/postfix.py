"""Postfix: the server-wide bundle and an SNI table (postconf(5) ``tls_server_sni_maps``).

Files written in the backend directory:

* ``default.pem`` — the server-wide bundle, named by ``smtpd_tls_chain_files`` in main.cf
  (postconf(5): key first, then the leaf, then its issuers, in one file);
* ``sni`` and the table built from it (``sni.lmdb``, or ``sni.db`` for ``hash:``) — one key per
  host name whose certificate differs from the server-wide one, the value naming that bundle.
  ``postmap -F`` (postmap(1)) embeds the bundles in the table, so it is built under umask 077
  (postmap otherwise makes it 0644) and under a temporary name, then renamed over the live
  table: an in-place rebuild would stall SNI lookups while postmap runs.
* ``bundles/<fingerprint>.pem`` — the bundles the table names.

smtpd notices a replaced table on its next connection and restarts by itself, so a table
change needs no reload; the server-wide bundle is read at process start, so changing it runs
``postfix reload``. Either way the apply pipeline verifies by handshake.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from app.agent.backends.base import Backend, BundleRef, Rendered, StepError, View, run


def default_map_type() -> str:
    """``lmdb`` when the postfix-lmdb plugin is installed (Debian: postfix-lmdb), else ``hash``."""
    return "lmdb" if Path("/usr/lib/postfix/postfix-lmdb.so").exists() else "hash"


_SUFFIX = {"lmdb": ".lmdb", "hash": ".db", "btree": ".db", "cdb": ".cdb"}


class PostfixBackend(Backend):
    name = "postfix"

    def __init__(self, config, options=None):
        super().__init__(config, options)
        opts = {**config.options, **(options or {})}
        self.cert_first = bool(opts.get("cert_first", False))
        self.map_type = opts.get("map_type") or default_map_type()
        self.config_directory = Path(
            opts.get("config_directory") or config.main_config or "/etc/postfix"
        )
        self.default_bundle = self.directory / "default.pem"
        self.map_source = self.directory / "sni"

    def bundle_path(self, fingerprint: str) -> Path:
        # The test hook's copies get their own name so a normal copy is never reused for it.
        suffix = ".certfirst.pem" if self.cert_first else ".pem"
        return self.bundle_dir / f"{fingerprint}{suffix}"

    def bundle_bytes(self, key_pem: bytes, certs_pem: bytes) -> bytes:
        if self.cert_first:  # test hook: Postfix then fails the handshake ("key not first")
            return certs_pem + key_pem
        return key_pem + certs_pem

    def map_file(self, source: Path) -> Path:
        return source.with_name(source.name + _SUFFIX.get(self.map_type, ".db"))

    def render(self, view: View) -> Rendered:
        rendered = Rendered()
        rendered.files[self.default_bundle] = BundleRef(view.server_certificate)
        lines = ["# written by the certpost agent; do not edit\n"]
        for name in sorted(view.mail):
            fp = view.mail[name]
            if fp == view.server_certificate:
                continue  # the server-wide bundle answers names without a table entry
            path = self.bundle_path(fp)
            rendered.bundles[path] = fp
            # postconf(5): a ".a.test" key matches subdomains; Postfix has no "*" syntax.
            key = name[1:] if name.startswith("*.") else name
            lines.append(f"{key}\t{path}\n")
        rendered.files[self.map_source] = "".join(lines).encode()
        return rendered

    async def build(self, staged: dict[Path, Path]) -> dict[Path, Path]:
        """Build the staged table with ``postmap -F`` (which also reads every named bundle)."""
        extra: dict[Path, Path] = {}
        source = staged.get(self.map_source)
        if source is None and not self.map_file(self.map_source).exists():
            source = self.map_source  # first run with an unchanged source but no table yet
        if source is not None:
            if shutil.which("postmap") is None:
                raise StepError("validate", self.name, "postmap is not installed")
            argv = ["postmap", "-c", str(self.config_directory), "-F", f"{self.map_type}:{source}"]
            status, output = await run(argv, umask=0o077)
            if status != 0 or "warning" in output.lower():
                raise StepError("validate", self.name, output or f"postmap exited with {status}")
            if source != self.map_source:
                extra[self.map_file(self.map_source)] = self.map_file(source)
        return extra

    async def validate(self, staged: dict[Path, Path]) -> None:
        await self.run_validate_command(self.config_directory)

    def needs_reload(self, changed: set[Path]) -> bool:
        return self.default_bundle in changed

    def cleanup_staged(self) -> None:
        staged_map = self.map_file(
            self.map_source.with_name(f".{self.map_source.name}.certpost-new")
        )
        for path in (staged_map, Path(str(staged_map) + "-lock")):
            if path.exists():
                os.unlink(path)
