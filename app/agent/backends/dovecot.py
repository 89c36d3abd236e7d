"""Dovecot 2.3: default ``ssl_cert``/``ssl_key`` and ``local_name`` blocks in one included file.

Dovecot's SSL configuration (doc.dovecot.org, "Dovecot SSL configuration") selects settings by
the client's SNI name with ``local_name <names> { ssl_cert = <file  ssl_key = <file }``; several
names share one block when written as ONE quoted, space-separated string
(``local_name "mail.a.test mail.b.test" {``; two quoted strings are a syntax error). The main
dovecot.conf must ``!include`` the live file after its own ssl settings.

Dovecot reads every certificate into its configuration and re-parses all of it on every reload,
so the file carries as little as possible: a block only for names whose certificate differs from
the server-wide one, one block per certificate, and no reload at all when the rendered file is
byte-identical (see docs/agent.md on scale). ``doveconf -n`` exits 0 with a missing key file;
``doveconf -x -n`` (expand ``<file`` values) catches it, and its output, which contains the
keys, goes to /dev/null. ``doveadm reload`` exits 0 even when the reload failed, so the
pipeline always verifies by handshake afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from app.agent.backends.base import Backend, Rendered, StepError, View, run
from app.agent.backends.section import ConfigError


class DovecotBackend(Backend):
    name = "dovecot"

    @classmethod
    def default_commands(cls, main, raw):
        conf = str(main or "/etc/dovecot/dovecot.conf")
        return ["doveconf", "-x", "-n", "-c", "{config}"], ["doveadm", "-c", conf, "reload"]

    def __init__(self, config, options=None):
        super().__init__(config, options)
        opts = {**config.options, **(options or {})}
        self.include_file = self.directory / "certpost.conf"
        local_names = opts.get("local_names", True)
        if not isinstance(local_names, bool):
            raise ConfigError("[dovecot] local_names must be true or false")
        # false: a TLS front ([haproxy]) serves the per-domain certificates on the implicit-TLS
        # ports, and Dovecot's own TLS (STARTTLS on 143/110) presents only the server-wide one.
        self.local_names = local_names
        self._last: tuple | None = None  # (view token, server certificate, Rendered) last rendered

    def per_name_sni(self) -> bool:
        return self.local_names

    def render(self, view: View) -> Rendered:
        """The include file; the previous render's (the same objects) when the view was made
        from the one rendered last by named changes that touch no mail name (a webmail
        change), which the pipeline then knows are live without a comparison."""
        last = self._last
        if (
            last is not None
            and last[1] == view.server_certificate
            and (not self.local_names or view.changes_since(last[0], "mail") == frozenset())
        ):
            self._last = (view.token, *last[1:])
            return Rendered(files=dict(last[2].files), bundles=dict(last[2].bundles))
        rendered = self._render(view)
        self._last = (view.token, view.server_certificate, rendered)
        return rendered

    def _render(self, view: View) -> Rendered:
        rendered = Rendered()
        default = self.bundle_path(view.server_certificate)
        rendered.bundles[default] = view.server_certificate
        lines = [
            "# written by the certpost agent; do not edit\n",
            f"ssl_cert = <{default}\n",
            f"ssl_key = <{default}\n",
        ]
        names_by_fp: dict[str, list[str]] = defaultdict(list)
        for name, fp in view.mail.items() if self.local_names else ():
            if fp != view.server_certificate:
                names_by_fp[fp].append(name)
        for fp in sorted(names_by_fp):
            path = self.bundle_path(fp)
            rendered.bundles[path] = fp
            names = " ".join(sorted(names_by_fp[fp]))
            lines.append(
                f'local_name "{names}" {{\n  ssl_cert = <{path}\n  ssl_key = <{path}\n}}\n'
            )
        rendered.files[self.include_file] = "".join(lines).encode()
        return rendered

    async def validate(self, staged: dict[Path, Path]) -> None:
        check = self.check_with_main_config(staged)
        try:
            argv = [a.replace("{config}", str(check)) for a in self.config.validate] or [
                "doveconf",
                "-x",
                "-n",
                "-c",
                str(check),
            ]
            # -x expands "<file" values into the output, keys included: discard stdout.
            status, output = await run(["sh", "-c", '"$@" >/dev/null', "doveconf", *argv])
            if status != 0:
                raise StepError(
                    "validate", self.name, output.replace(str(check), str(self.config.main_config))
                )
        finally:
            check.unlink(missing_ok=True)
