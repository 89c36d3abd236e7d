"""Renewal timing (RFC 9773 ARI and the one-third rule), keys and CSRs.

Pebble 2.4 (Debian 12) has no `renewalInfo`, so `renewal_info` is checked against it for the
"no ARI" answer, and against a tiny local directory for the ARI path.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from acme import client as acme_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.acme import (
    RenewalInfoError,
    RenewalWindow,
    ari_cert_id,
    choose_renewal_at,
    default_renewal_at,
    make_client,
    make_csr,
    renewal_info,
)
from app.acme.keys import generate_account_key, normalize_names
from tests.support.ports import free_port

UTC = dt.UTC


def _cert(serial: int, aki: bytes) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.test")])
    now = dt.datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=89))
        .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_ari_cert_id_matches_the_rfc_example():
    # RFC 9773 §4.1 example: AKI 69:88:5B:…:C8:D4, serial 00:87:65:43:21.
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert ari_cert_id(_cert(0x87654321, aki)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF00, 2**64 + 5, 2**159 - 1])
def test_ari_cert_id_agrees_with_the_acme_package(serial):
    cert = _cert(serial, bytes(range(20)))
    assert ari_cert_id(cert) == acme_client._renewal_info_path_component(cert)


def test_default_renewal_at_is_a_third_before_expiry():
    nb = dt.datetime(2025, 1, 1, tzinfo=UTC)
    na = nb + dt.timedelta(days=90)
    assert default_renewal_at(nb, na) == na - dt.timedelta(days=30)


def test_choose_renewal_at_stays_in_the_window():
    start = dt.datetime(2025, 3, 1, tzinfo=UTC)
    window = RenewalWindow(start, start + dt.timedelta(days=2))
    rng = random.Random(7)
    now = start - dt.timedelta(days=10)
    for _ in range(50):
        assert window.start <= choose_renewal_at(window, now=now, rng=rng) <= window.end
    later = start + dt.timedelta(days=1)
    assert later <= choose_renewal_at(window, now=later, rng=rng) <= window.end
    past = window.end + dt.timedelta(hours=1)
    assert choose_renewal_at(window, now=past) == past


def test_names_and_csr():
    names = normalize_names(["Mail.A.Test.", "mail.a.test", "*.a.test"])
    assert names == ["mail.a.test", "*.a.test"]
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(make_csr(key, names))
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == names
    with pytest.raises(ValueError):
        normalize_names([])


@pytest.mark.acme
def test_renewal_info_is_none_without_ari(pebble_server, acme_account, dns_solver):
    from app.acme import issue

    client, _, _ = acme_account
    issued = issue(client, ["z12.test"], "ec-p256", dns_solver, poll_interval=0.05)
    assert renewal_info(client, issued.certificate_pem) is None


class _AriDirectory:
    """A directory with `renewalInfo` only (a stand-in: the installed Pebble predates ARI)."""

    def __init__(self, window: dict | None, status: int = 200) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        self.url = f"{base}/dir"
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.seen.append(self.path)
                if self.path == "/dir":
                    body = {
                        "newNonce": f"{base}/nonce",
                        "newAccount": f"{base}/acct",
                        "newOrder": f"{base}/order",
                        "renewalInfo": f"{base}/ari",
                    }
                    code = 200
                elif self.path.startswith("/ari/") and status == 200:
                    body, code = {"suggestedWindow": window}, 200
                else:
                    body = {"type": "urn:ietf:params:acme:error:malformed", "detail": "no"}
                    code = status
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header(
                    "Content-Type",
                    "application/json" if code == 200 else "application/problem+json",
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_renewal_info_reads_the_suggested_window():
    cert = _cert(0x87654321, bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4"))
    from cryptography.hazmat.primitives.serialization import Encoding

    server = _AriDirectory({"start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00Z"})
    try:
        client = make_client(server.url, generate_account_key())
        window = renewal_info(client, cert.public_bytes(Encoding.PEM))
        assert window == (
            dt.datetime(2025, 1, 2, 4, tzinfo=UTC),
            dt.datetime(2025, 1, 3, 4, tzinfo=UTC),
        )
        assert "/ari/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE" in server.seen
    finally:
        server.close()

    failing = _AriDirectory(None, status=404)
    try:
        client = make_client(failing.url, generate_account_key())
        with pytest.raises(RenewalInfoError) as info:
            renewal_info(client, cert.public_bytes(Encoding.PEM))
        assert info.value.step == "renewal_info"
        assert info.value.problem["type"] == "urn:ietf:params:acme:error:malformed"
    finally:
        failing.close()
