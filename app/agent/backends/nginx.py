"""nginx: ONE ``server`` block whose certificate is chosen per SNI name by a ``map``.

ngx_http_ssl_module: since 1.15.9 ``ssl_certificate`` and ``ssl_certificate_key`` accept
variables and then load the files at handshake time, and one file may hold both the key and the
certificate chain. The agent writes one file, included in the ``http`` block of nginx.conf:

    map $ssl_server_name $certpost_bundle { hostnames; default <bundle>; webmail.a.test <bundle>; }
    server { listen ... ssl; ssl_certificate $certpost_bundle; ssl_certificate_key $certpost_bundle; ... }

(ngx_http_map_module: ``hostnames`` allows ``*.a.test`` masks; unknown names, and clients that
send no SNI, get ``default``). One block instead of one per domain keeps ``nginx -t`` and reloads
in milliseconds at 10,000 names. Because files are loaded at handshake time, the WORKER user
reads the bundles: ``bundle_group`` makes the copies 0640 and owned by that group.
``nginx -t`` cannot check certificates given by variables; the pipeline checked every bundle on
receipt and verifies by handshake after ``nginx -s reload``.
"""

from __future__ import annotations

from pathlib import Path

from app.agent.backends.base import Backend, Rendered, View


class NginxBackend(Backend):
    name = "nginx"

    def __init__(self, config, options=None):
        super().__init__(config, options)
        opts = {**config.options, **(options or {})}
        self.include_file = self.directory / "certpost.conf"
        self.listen = [str(x) for x in opts.get("listen", [])]
        self.upstream = opts.get("upstream") or ""
        self.server_extra = opts.get("server_extra") or ""

    def serves_mail(self) -> bool:
        return False

    def render(self, view: View) -> Rendered:
        rendered = Rendered()
        default = self.bundle_path(view.webmail_default)
        rendered.bundles[default] = view.webmail_default
        lines = [
            "# written by the certpost agent; do not edit\n",
            "map $ssl_server_name $certpost_bundle {\n    hostnames;\n",
            f"    default {default};\n",
        ]
        for name in sorted(view.webmail):
            path = self.bundle_path(view.webmail[name])
            rendered.bundles[path] = view.webmail[name]
            lines.append(f"    {name} {path};\n")
        lines.append("}\n")
        if self.listen:
            lines.append("server {\n")
            lines += [f"    listen {addr} ssl;\n" for addr in self.listen]
            lines.append(
                "    ssl_certificate $certpost_bundle;\n    ssl_certificate_key $certpost_bundle;\n"
            )
            if self.server_extra:
                lines.append(f"    {self.server_extra}\n")
            if self.upstream:
                lines.append(
                    "    location / {\n"
                    f"        proxy_pass {self.upstream};\n"
                    "        proxy_set_header Host $host;\n"
                    "        proxy_set_header X-Forwarded-Proto https;\n    }\n"
                )
            else:
                lines.append('    return 200 "webmail\\n";\n')
            lines.append("}\n")
        rendered.files[self.include_file] = "".join(lines).encode()
        return rendered

    async def validate(self, staged: dict[Path, Path]) -> None:
        check = self.check_with_main_config(staged)
        try:
            await self.run_validate_command(check)
        finally:
            check.unlink(missing_ok=True)
