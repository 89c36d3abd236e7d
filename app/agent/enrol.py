"""``certpost agent enroll``: register this agent with the controller in one command.

What it does, in order, so that a refusal at any step leaves the machine as it was:

1. reads the configuration file (if there is one) and works out the result with a placeholder
   key, checked by the same parser the agent starts with: a configuration the agent would refuse
   is refused before the token is spent;
2. connects to the controller: with ``--pin sha256:<hex>`` the certificate the controller
   presents is compared with the pin during a first handshake, before any byte of the request
   (and so the token) is sent, and the request then goes over a connection that trusts exactly
   that certificate (as the controller pins its agents, app/deployments/agent_client.py); with
   ``--ca-bundle FILE`` the usual chain and host-name checks run against those roots; otherwise
   against the system's roots. Plain ``http://`` is refused unless ``--insecure-http`` (the
   token and the controller's key would travel unprotected);
3. sends the token, the agent's URL and the fingerprint of its TLS identity (the one in
   ``state_dir/tls`` when it exists, else a new one made in memory);
4. only on success writes the new identity (if any) and the configuration: ``[agent]
   controller_public_key`` always, ``state_dir`` and ``hostname`` when missing, ``[listen]`` when
   ``--listen`` is given or none is set. Other lines, comments included, are kept.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.agent.config import ConfigError, parse_config
from app.agent.identity import self_signed
from app.agent.tomledit import set_keys
from app.kit.signing import public_key_from_text
from app.kit.x509 import MaterialError, fingerprint_sha256, load_pem_certificates

DEFAULT_STATE_DIR = "/var/lib/certpost-agent"
DEFAULT_PORT = 8750
_PLACEHOLDER_KEY = "ed25519:" + "A" * 43 + "="


class EnrolError(Exception):
    """A refusal worded for the operator (printed as one line, exit status 1)."""


@dataclass(frozen=True)
class Enrolment:
    server_id: str
    server_name: str
    agent_url: str
    fingerprint: str
    config_path: Path


def parse_pin(pin: str) -> str:
    """``sha256:<64 hex>`` (colons and case as people paste them) → 64 lower-case hex digits."""
    algorithm, _, value = pin.partition(":")
    if algorithm.lower() != "sha256" or not value:
        raise EnrolError("--pin must look like sha256:<64 hex digits>")
    digits = value.replace(":", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise EnrolError("--pin must look like sha256:<64 hex digits>")
    return digits


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise EnrolError("--listen must be HOST:PORT, e.g. 0.0.0.0:8750")
    return host.strip("[]") or "0.0.0.0", int(port)


def pinned_context(host: str, port: int, pin: str, timeout: float) -> ssl.SSLContext:
    """Handshake once without sending anything, compare the controller's certificate with the
    pin, and trust exactly that certificate from then on."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        with (socket.create_connection((host, port), timeout=timeout) as sock,
              probe.wrap_socket(sock, server_hostname=host) as tls):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise EnrolError(f"cannot reach the controller at {host}:{port}: {exc.strerror or exc}") from None
    seen = hashlib.sha256(der).hexdigest()
    if seen != pin:
        raise EnrolError(f"the controller presented a certificate with SHA-256 {seen}, not the pinned {pin}; "
                         "nothing was sent or written")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(der))
    return context


def enrolment_url(controller: httpx.URL) -> httpx.URL:
    """The enrolment endpoint under the controller's URL, keeping a path prefix (a controller
    behind a proxy at ``https://host/certpost`` is reached at ``/certpost/v1/...``)."""
    return controller.copy_with(path=controller.path.rstrip("/") + "/v1/agent-enrolments", query=None,
                                fragment=None)


def _verify(url: httpx.URL, pin: str | None, ca_bundle: Path | None, insecure_http: bool, timeout: float):
    if url.scheme == "http":
        if not insecure_http:
            raise EnrolError("the controller URL is http://: the token and the controller's key would travel "
                             "unprotected; use https:// (or --insecure-http on a trusted network)")
        return False
    if url.scheme != "https" or not url.host:
        raise EnrolError("--controller must be an https:// URL")
    if pin and ca_bundle:
        raise EnrolError("give --pin or --ca-bundle, not both")
    if pin:
        return pinned_context(url.host, url.port or 443, parse_pin(pin), timeout)
    if ca_bundle:
        try:
            return ssl.create_default_context(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise EnrolError(f"--ca-bundle {ca_bundle}: {exc}") from None
    return ssl.create_default_context()


def _identity(state_dir: Path, hostname: str) -> tuple[bytes | None, bytes | None, str]:
    """(new key, new certificate, fingerprint): the existing identity is kept (None, None, fp)."""
    cert_path = state_dir / "tls" / "agent.crt"
    if cert_path.exists() and (state_dir / "tls" / "agent.key").exists():
        try:
            return None, None, fingerprint_sha256(load_pem_certificates(cert_path.read_bytes())[0])
        except MaterialError as exc:
            raise EnrolError(f"{cert_path}: {exc}; move it away to make a new identity") from None
    key_pem, cert_pem = self_signed(hostname, extra_names=("localhost", "127.0.0.1"))
    return key_pem, cert_pem, fingerprint_sha256(load_pem_certificates(cert_pem)[0])


def _writable(directory: Path, what: str) -> None:
    """EnrolError unless `directory` exists and is writable, or can be created (its nearest
    existing ancestor is a writable directory). Nothing is created here."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise EnrolError(f"{what} {directory} cannot be created: {probe} is not a directory; nothing was sent")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise EnrolError(f"{what} {directory} is not writable by this user (run as root?); nothing was sent")


def _write_identity(state_dir: Path, key_pem: bytes, cert_pem: bytes) -> None:
    tls = state_dir / "tls"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(tls / "agent.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    (tls / "agent.crt").write_bytes(cert_pem)


def _write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600  # as docs/agent.md installs it
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.enrol-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _config_text(text: str, data: dict, *, key: str, state_dir: str, hostname: str | None,
                 listen: tuple[str, int] | None) -> str:
    agent = {"controller_public_key": key}
    if "state_dir" not in data.get("agent", {}):
        agent["state_dir"] = state_dir
    if hostname and "hostname" not in data.get("agent", {}):
        agent["hostname"] = hostname
    text = set_keys(text, "agent", agent)
    if listen is not None:
        text = set_keys(text, "listen", {"host": listen[0], "port": listen[1]})
    return text


def _checked(text: str, where: Path):
    try:
        return parse_config(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise EnrolError(f"{where}: {exc}") from None
    except ConfigError as exc:
        raise EnrolError(f"{where}: {exc}") from None


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('code', response.status_code)}: {body.get('detail', '')}"
    except ValueError:
        return f"HTTP {response.status_code}"


def enrol(controller: str, token: str, *, config_path: Path, pin: str | None = None, ca_bundle: Path | None = None,
          agent_url: str | None = None, listen: str | None = None, hostname: str | None = None,
          insecure_http: bool = False, timeout: float = 30.0) -> Enrolment:
    try:
        text = config_path.read_text() if config_path.exists() else ""
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EnrolError(f"{config_path}: {exc}") from None
    except UnicodeDecodeError:
        raise EnrolError(f"{config_path}: not UTF-8 text (TOML files are UTF-8)") from None
    existing_listen = data.get("listen", {})
    listen_at = parse_listen(listen) if listen else None
    if listen_at is None and "port" not in existing_listen:
        listen_at = (existing_listen.get("host", "0.0.0.0"), DEFAULT_PORT)
    state_dir = data.get("agent", {}).get("state_dir", DEFAULT_STATE_DIR)
    known_host = data.get("agent", {}).get("hostname") or hostname
    # Refuse a configuration the agent would refuse before the token is spent.
    _checked(_config_text(text, data, key=_PLACEHOLDER_KEY, state_dir=state_dir, hostname=known_host or "localhost",
                          listen=listen_at), config_path)

    key_pem, cert_pem, fingerprint = _identity(Path(state_dir), known_host or "localhost")
    # What is written after the token is spent must be writable before it is spent.
    _writable(config_path.parent, "the configuration's directory")
    if key_pem is not None:
        _writable(Path(state_dir), "[agent] state_dir")

    url = httpx.URL(controller.rstrip("/"))
    verify = _verify(url, pin, ca_bundle, insecure_http, timeout)
    port = listen_at[1] if listen_at else existing_listen["port"]
    reach = agent_url or f"https://{known_host or socket.getfqdn()}:{port}"
    body = {"token": token, "agent_url": reach, "agent_tls_fingerprint": fingerprint}
    try:
        with httpx.Client(verify=verify, timeout=timeout, follow_redirects=False) as http:
            response = http.post(str(enrolment_url(url)), json=body)
    except httpx.HTTPError as exc:
        raise EnrolError(f"the controller at {url} cannot be reached: {exc}") from None
    if response.status_code != 200:
        raise EnrolError(f"the controller refused the enrolment: {_problem(response)}")
    try:
        answer = response.json()
        public_key_from_text(answer["controller_public_key"])
        if not all(isinstance(answer.get(field), str) for field in ("server_id", "server_name", "agent_url")):
            raise ValueError("fields missing")
    except (AttributeError, KeyError, TypeError, ValueError):
        raise EnrolError(f"the answer from {url} is not a certpost enrolment (is --controller the controller's "
                         "URL?); nothing was written") from None

    final = _config_text(text, data, key=answer["controller_public_key"], state_dir=state_dir,
                         hostname=known_host or answer.get("server_hostname"), listen=listen_at)
    _checked(final, config_path)
    if key_pem is not None:
        _write_identity(Path(state_dir), key_pem, cert_pem)
    _write_atomically(config_path, final)
    return Enrolment(answer["server_id"], answer["server_name"], answer["agent_url"], fingerprint, config_path)
