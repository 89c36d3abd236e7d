"""nginx configuration that serves mail client autoconfiguration for every domain of the server.

The desired document's ``autoconfig`` maps each domain to the host name clients should use
(the controller's rule, ``app.domains.rules.autoconfig_hostname``). This module turns it into
one ``map`` line per domain and fixed ``location`` blocks, so adding a domain is one line and a
cheap reload, as for certificates (ngx_http_map_module, ``hostnames``: ``.a.test`` matches
``a.test`` and every name under it, the longest match winning):

    map $host $certpost_autoconfig { hostnames; default ""; .a.test "a.test mail.a.test"; }

Only modules built into a stock nginx are used (map, rewrite's ``return``, mirror), so a stock nginx serves it:

- Thunderbird: ``GET /mail/config-v1.1.xml`` (on ``autoconfig.<d>``) and
  ``GET /.well-known/autoconfig/mail/config-v1.1.xml`` (on ``<d>``), any query string
  (``?emailaddress=``) accepted and ignored: the document uses ``%EMAILADDRESS%``.
- Outlook: ``POST /autodiscover/autodiscover.xml``. The answer echoes the request's
  ``EMailAddress``, which is attacker input. ``$request_body`` has a value only once some
  module has read the body: ngx_http_mirror_module reads it (``mirror_request_body`` is on by
  default) in the precontent phase, for a subrequest to an internal location that answers 204;
  the content phase then finds no file (``root`` names none), and ``error_page`` hands the
  request to a named location whose ``return`` builds the answer, the body now in memory
  (``client_body_in_single_buffer``, at most 16 KiB, else 413). No second listener, no socket.
  The address is taken from the body by a regular expression that admits only
  ``[A-Za-z0-9._+-]`` and ``@`` (nothing XML or nginx could interpret); a request without such
  an address gets [MS-OXDSCLI] error 600.
- Apple: ``GET /mail/<d>.mobileconfig?email=user@<d>`` (``<d>`` must be the domain the host
  belongs to); the address passes the same filter (``%40`` for ``@`` accepted), an invalid one
  is 400, none gives a profile that asks on the device.
"""

from __future__ import annotations

from app.agent.mailconfig import autodiscover, autodiscover_error, mobileconfig, thunderbird

_LOCAL = r"[A-Za-z0-9._+-]{1,64}"
_DOMAIN = r"[A-Za-z0-9.-]{1,253}"

HOST = "$certpost_ac_host"
DOMAIN = "$certpost_ac_domain"
XML = "types { } default_type \"application/xml; charset=utf-8\";"


def http_maps(autoconfig: dict[str, str]) -> list[str]:
    """The ``http``-level maps: per domain one line, then the fixed extractors."""
    lines = ["map $host $certpost_autoconfig {\n    hostnames;\n    default \"\";\n"]
    lines += [f'    .{domain} "{domain} {autoconfig[domain]}";\n' for domain in sorted(autoconfig)]
    lines.append("}\n")
    lines += [
        'map $certpost_autoconfig $certpost_ac_domain {\n    default "";\n    "~^(\\S+) " $1;\n}\n',
        'map $certpost_autoconfig $certpost_ac_host {\n    default "";\n    "~ (\\S+)$" $1;\n}\n',
        # The request body, read while proxying: the first EMailAddress, if it is plain.
        ("map $request_body $certpost_ad_email_in {\n    default \"\";\n"
        f'    "~*<EMailAddress>\\s*({_LOCAL}@{_DOMAIN})\\s*</EMailAddress>" $1;\n}}\n'),
        ("map $arg_email $certpost_mc_email {\n    default \"\";\n"
        f'    "~^({_LOCAL})(?:@|%40)({_DOMAIN})$" "$1@$2";\n}}\n'),
        # A profile needs UUIDs; $request_id (32 random hex digits) gives two distinct ones.
        ('map $request_id $certpost_uuid_a {\n    default "";\n'
        '    "~^(.{8})(.{4})(.{4})(.{4})(.{12})$" "$1-$2-$3-$4-$5";\n}\n'),
        ('map $request_id $certpost_uuid_b {\n    default "";\n'
        '    "~^(.{12})(.{4})(.{4})(.{4})(.{8})$" "$5-$4-$3-$2-$1";\n}\n'),
    ]
    return lines


def _quoted(text: str) -> str:
    if "'" in text or "\\" in text:
        raise ValueError("a template cannot contain a single quote or a backslash")
    return f"'{text}'"


def locations() -> list[str]:
    """The ``location`` blocks inside the HTTPS ``server`` (before ``location /``)."""
    tb = _quoted(thunderbird(DOMAIN, HOST))
    answer = _quoted(autodiscover(HOST, "$certpost_ad_email_in"))
    error = _quoted(autodiscover_error())
    with_user = _quoted(mobileconfig(DOMAIN, HOST, "$certpost_mc_email", "$certpost_uuid_a", "$certpost_uuid_b"))
    without_user = _quoted(mobileconfig(DOMAIN, HOST, None, "$certpost_uuid_a", "$certpost_uuid_b"))
    return [
        "    location ~ ^/(\\.well-known/autoconfig/)?mail/config-v1\\.1\\.xml$ {\n",
        f"        {XML}\n",
        '        if ($certpost_ac_domain = "") {\n            return 404;\n        }\n',
        f"        return 200 {tb};\n",
        "    }\n",
        "    location ~* ^/autodiscover/autodiscover\\.xml$ {\n",
        '        if ($certpost_ac_domain = "") {\n            return 404;\n        }\n',
        "        if ($request_method != POST) {\n            return 405;\n        }\n",
        "        client_max_body_size 16k;\n        client_body_buffer_size 16k;\n",
        "        client_body_in_single_buffer on;\n",
        "        mirror /certpost-read-body;\n",  # reads the body (see the module docstring)
        "        root /nonexistent;\n        log_not_found off;\n",
        # The file that is not there is a 404, and so is the unknown host above, which the named
        # location therefore refuses again (error pages are not applied twice: its 404 stands).
        "        error_page 404 = @certpost_autodiscover;\n",
        "    }\n",
        "    location = /certpost-read-body {\n        internal;\n        return 204;\n    }\n",
        "    location @certpost_autodiscover {\n",
        f"        {XML}\n",
        '        if ($certpost_ac_domain = "") {\n            return 404;\n        }\n',
        ('        if ($certpost_ad_email_in = "") {\n'
         f"            return 200 {error};\n        }}\n"),
        f"        return 200 {answer};\n",
        "    }\n",
        "    location ~ ^/mail/(?<certpost_mc_name>[^/]+)\\.mobileconfig$ {\n",
        "        types { } default_type application/x-apple-aspen-config;\n",
        '        add_header Content-Disposition \'attachment; filename="$certpost_ac_domain.mobileconfig"\';\n',
        '        if ($certpost_ac_domain = "") {\n            return 404;\n        }\n',
        "        if ($certpost_mc_name != $certpost_ac_domain) {\n            return 404;\n        }\n",
        ('        if ($arg_email = "") {\n'
         f"            return 200 {without_user};\n        }}\n"),
        '        if ($certpost_mc_email = "") {\n            return 400;\n        }\n',
        f"        return 200 {with_user};\n",
        "    }\n",
    ]
