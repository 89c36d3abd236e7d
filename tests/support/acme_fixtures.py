"""Session fixtures (a pytest plugin, loaded by tests/conftest.py): one BIND and one Pebble for
all ACME tests, plus an http-01 responder.

Fixtures:
    bind_server      BindServer: port, zones (a.test, z01..z25.test), readonly_zones (locked.test),
                     key_name / key_secret / key_algorithm (TSIG, hmac-sha256)
    pebble_server    PebbleServer, restarted if it stopped answering: directory_url, ca_bundle,
                     http_port, dns_server, issuing_roots_pem(), intermediates_pem()
    dns_provider     Rfc2136Provider for bind_server with the right TSIG key
    dns_solver       Dns01Solver(dns_provider) with short propagation polling
    acme_account     (client, account_key_pem, account_uri) registered at Pebble
    http01_responder Http01Responder on pebble_server.http_port: .publish / .unpublish / .tokens
    txt_at           function(fqdn) -> set of TXT values BIND serves there now
    powerdns_server  PowerDns (tests/support/powerdns.py): api_url, api_key, create_zone, txt_records
    powerdns_pebble  a Pebble of its own that resolves through powerdns_server
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.acme import Dns01Solver, register_or_load_account
from app.acme.dns import Rfc2136Provider, query_txt
from tests.support.bind import BindServer, start_bind, stop_bind
from tests.support.pebble import PebbleServer, start_pebble, stop_pebble
from tests.support.powerdns import PowerDns, start_powerdns, stop_powerdns

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


@pytest.fixture(scope="session")
def bind_server() -> Iterator[BindServer]:
    server = start_bind()
    try:
        yield server
    finally:
        stop_bind(server)


@pytest.fixture(scope="session")
def _pebble_session(bind_server: BindServer) -> Iterator[PebbleServer]:
    server = start_pebble(bind_server.address)
    try:
        yield server
    finally:
        stop_pebble(server)


@pytest.fixture(scope="session")
def powerdns_server() -> Iterator[PowerDns]:
    server = start_powerdns()
    try:
        yield server
    finally:
        stop_powerdns(server)


@pytest.fixture(scope="session")
def _powerdns_pebble_session(powerdns_server: PowerDns) -> Iterator[PebbleServer]:
    server = start_pebble(powerdns_server.address)
    try:
        yield server
    finally:
        stop_pebble(server)


@pytest.fixture
def powerdns_pebble(_powerdns_pebble_session: PebbleServer) -> PebbleServer:
    """A Pebble validating dns-01 against PowerDNS, restarted first if it stopped answering."""
    _powerdns_pebble_session.ensure_alive()
    return _powerdns_pebble_session


@pytest.fixture
def pebble_server(_pebble_session: PebbleServer) -> PebbleServer:
    """The session's Pebble, restarted first if it stopped answering (it can deadlock)."""
    _pebble_session.ensure_alive()
    return _pebble_session


@pytest.fixture
def dns_provider(bind_server: BindServer) -> Rfc2136Provider:
    return Rfc2136Provider(
        bind_server.host,
        bind_server.port,
        key_name=bind_server.key_name,
        key_secret=bind_server.key_secret,
        key_algorithm=bind_server.key_algorithm,
        timeout=5.0,
    )


@pytest.fixture
def dns_solver(dns_provider: Rfc2136Provider) -> Dns01Solver:
    return Dns01Solver(dns_provider, propagation_timeout=10.0, propagation_interval=0.1)


@pytest.fixture
def acme_account(pebble_server: PebbleServer):
    """A fresh account per test: cheap (about 10 ms), and survives a Pebble restart."""
    return register_or_load_account(
        pebble_server.directory_url,
        None,
        "hostmaster@a.test",
        ca_bundle=pebble_server.ca_bundle,
        request_timeout=15.0,
    )


@pytest.fixture
def txt_at(bind_server: BindServer) -> Callable[[str], set[str]]:
    def lookup(fqdn: str) -> set[str]:
        values = query_txt(fqdn, (bind_server.host, bind_server.port))
        assert values is not None, f"BIND did not answer for {fqdn}"
        return values

    return lookup


class Http01Responder:
    """Serves published key authorizations the way a web server in front of webmail would."""

    def __init__(self, port: int) -> None:
        self.tokens: dict[str, str] = {}
        self.requests: list[str] = []
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                responder.requests.append(self.path)
                token = self.path.removeprefix(CHALLENGE_PREFIX)
                body = (
                    responder.tokens.get(token) if self.path.startswith(CHALLENGE_PREFIX) else None
                )
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, token: str, key_authorization: str) -> None:
        self.tokens[token] = key_authorization

    def unpublish(self, token: str) -> None:
        self.tokens.pop(token, None)


@pytest.fixture(scope="session")
def http01_responder(_pebble_session: PebbleServer) -> Iterator[Http01Responder]:
    responder = Http01Responder(_pebble_session.http_port)
    responder.thread.start()
    try:
        yield responder
    finally:
        responder.httpd.shutdown()
        responder.httpd.server_close()


@contextmanager
def controller_using(context, pebble: PebbleServer):
    """Point a controller context at `pebble` (directory, its HTTPS CA, fast polling) and trust
    Pebble's issuing root, so issued certificates read back as `trusted`; restore afterwards."""
    from cryptography import x509

    from app.kit.trust import TrustStore

    settings = context.settings
    fields = ("acme_directory_url", "acme_ca_bundle", "acme_propagation_interval",
              "acme_propagation_timeout", "acme_poll_interval")
    saved = {name: getattr(settings, name) for name in fields}, context.trust
    settings.acme_directory_url, settings.acme_ca_bundle = pebble.directory_url, pebble.ca_bundle
    settings.acme_propagation_interval = settings.acme_poll_interval = 0.1
    settings.acme_propagation_timeout = 5.0
    roots = x509.load_pem_x509_certificates(pebble.issuing_roots_pem().encode())
    _drop_reader(context)  # the upload workers judge with the roots they were started with
    context.trust = TrustStore(context.trust.roots + roots)
    try:
        yield pebble
    finally:
        for name, value in saved[0].items():
            setattr(settings, name, value)
        _drop_reader(context)
        context.trust = saved[1]


def _drop_reader(context) -> None:
    """Stop the context's upload workers, so the next upload starts them with the trust store of
    that moment (``AppContext.material_reader`` builds them on first use)."""
    if context._reader is not None:
        context._reader.close()
        context._reader = None
