"""The webmail default is verified where it is served: HTTPS without SNI, for an unknown name
and for the server's own host name (app.agent.verify.plan); the mail daemons are not asked
for the host name (their default is the server-wide mail certificate, probed without SNI)."""

from __future__ import annotations

from dataclasses import replace

from app.agent.backends.dovecot import DovecotBackend
from app.agent.backends.nginx import NginxBackend
from app.agent.backends.postfix import PostfixBackend
from app.agent.isolation import served_view, verify_culprits
from app.agent.verify import UNKNOWN_NAME, plan
from tests.agent.test_render import VIEW, config

W = "e" * 64  # the webmail default, distinct from the server-wide mail certificate
HOST = "mx1.host.test"


def _view(**changes):
    return replace(VIEW, **{"webmail_default": W, "server_hostname": HOST, **changes})


def _backends(tmp_path):
    cfg = config(tmp_path)
    return [PostfixBackend(cfg.postfix), DovecotBackend(cfg.dovecot), NginxBackend(cfg.nginx)]


def test_https_is_probed_with_the_host_name_and_without_sni(tmp_path):
    probes = plan(_backends(tmp_path), _view(), None, limit=24)
    https = [(p.sni, p.expected, p.name) for p in probes if p.port == 8443]
    assert https[:3] == [(None, W, None), (UNKNOWN_NAME, W, None), (HOST, W, None)]
    assert ("webmail.a.test", VIEW.webmail["webmail.a.test"], "webmail.a.test") in https
    mail = [(p.sni, p.expected) for p in probes if p.port in (25, 993)]
    assert HOST not in {sni for sni, _ in mail}  # Postfix and Dovecot: unchanged
    assert {fp for sni, fp in mail if sni in (None, UNKNOWN_NAME)} == {VIEW.server_certificate}


def test_a_bound_webmail_name_equal_to_the_host_name_keeps_its_binding(tmp_path):
    view = _view(webmail={**VIEW.webmail, HOST: "f" * 64})
    probes = plan(_backends(tmp_path), view, None, limit=24)
    assert {p.expected for p in probes if p.port == 8443 and p.sni == HOST} == {"f" * 64}


def test_no_host_name_probe_without_a_usable_host_name(tmp_path):
    for hostname in ("", "192.0.2.1", "Not A Name"):
        probes = plan(_backends(tmp_path), _view(server_hostname=hostname), None, limit=24)
        assert [p.sni for p in probes if p.port == 8443][:3] == [None, UNKNOWN_NAME, "webmail.a.test"]


def test_a_failed_host_name_probe_is_nobodys_binding():
    """The default is server-wide: its failure rolls the whole change back (no name is held)."""
    probes = [{"daemon": "nginx", "service": "webmail", "name": None, "error": "served x"}]
    assert verify_culprits(probes, _view(), VIEW) is None


def test_served_view_keeps_the_host_name():
    assert served_view(_view(), []).server_hostname == HOST
    from app.agent.isolation import NameFailure

    failure = NameFailure("webmail.a.test", "webmail", "a" * 64, "verify_failed", "x", None)
    assert served_view(_view(), [failure]).server_hostname == HOST
