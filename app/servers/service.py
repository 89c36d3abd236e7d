"""Registering mail servers and choosing their server-level certificates: the server-wide mail
certificate and the webmail default."""

from __future__ import annotations

import httpx
from sqlalchemy.exc import IntegrityError

from app.accounts.caller import Caller
from app.certificates import material
from app.certificates.errors import CertificateNotPlatform
from app.certificates.models import Certificate
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.db import new_id
from app.deployments.outbox import forget_applied, servers_changed
from app.domains import rules, tls_upkeep
from app.events import EventKind, record
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import utc_now
from app.paging import PageRequest, Window
from app.preconditions import NONE as NO_PRECONDITION
from app.preconditions import Precondition, server_tag
from app.problems import Conflict, NotFound, RuleViolation
from app.servers.models import Server
from app.servers.repository import ServerRepository
from app.servers.software import capabilities, front_allowed
from app.versioning import row_version


class InvalidHostname(RuleViolation):
    """The server's host name is not a valid DNS host name."""

    code, title = "invalid_name", "Not a valid host name"


class InvalidAgentUrl(RuleViolation):
    """`agent_url` is not an https:// URL certpost may contact."""

    code, title = "invalid_agent_url", "The agent URL must be an https:// URL"


class ServerExists(Conflict):
    """A server with this name or host name exists."""

    code, title = "server_exists", "A server with this name exists"


class ServerInUse(Conflict):
    """Domains still use this server (`domains` says how many); move or delete them first."""

    code, title = "server_in_use", "Domains still use this server"
    extensions = ("domains",)


class WebmailCertificateNotSet(NotFound):
    """``DELETE /v1/servers/{id}/webmail-certificate`` on a server with no webmail default chosen:
    it already presents the server-wide mail certificate for webmail."""

    code, title = "webmail_certificate_not_set", "No webmail default certificate is set on this server"


def normalise_agent_url(url: str | None) -> str | None:
    """Agents are reached over https only (their certificate is pinned); no credentials in URLs."""
    if url is None:
        return None
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise InvalidAgentUrl("the agent URL cannot be parsed") from None
    if parsed.scheme != "https" or not parsed.host:
        raise InvalidAgentUrl("the agent URL must start with https:// and name a host")
    if parsed.userinfo:
        raise InvalidAgentUrl("the agent URL must not carry credentials")
    return str(parsed).rstrip("/")


def normalise_fingerprint(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = value.replace(":", "").lower()
    if len(cleaned) != 64:
        raise RuleViolation("agent_tls_fingerprint must be a SHA-256 (64 hex digits)")
    return cleaned


class ServerService:
    def __init__(self, repo: ServerRepository, certificates: CertificateService, expiring_days: int = 30):
        self.repo = repo
        self.certificates = certificates
        self.expiring_days = expiring_days

    async def list(self, page: PageRequest) -> Window[Server]:
        """Servers have no owning account: only admins list them (the router requires one)."""
        return await self.repo.list(page)

    async def get(self, server_id: str) -> Server:
        server = await self.repo.get(server_id)
        if server is None:
            raise NotFound("server not found")
        return server

    async def register(self, *, name: str, hostname: str, software: str, agent_url: str | None,
                       agent_tls_fingerprint: str | None, caller: Caller, tls_front: str | None = None) -> Server:
        """Register a server with a fresh self-signed certificate for its host name.

        That certificate is both its server-wide mail certificate and its default webmail
        certificate, which is what a mail server presents out of the box (domain.md).
        """
        try:
            host = normalise_hostname(hostname)
        except InvalidName as exc:
            raise InvalidHostname(f"hostname: {exc}") from None
        _check_front(software, tls_front)
        if await self.repo.by_name(name):
            raise ServerExists(f"a server named {name!r} exists")
        default = await self.certificates.store(
            material.self_signed([host]), account_id=None, name=f"{host} (self-signed default)", source="self-signed",
            caller=caller,
        )
        server = Server(
            id=new_id(),
            name=name,
            hostname=host,
            software=software,
            tls_front=tls_front,
            agent_url=normalise_agent_url(agent_url),
            agent_tls_fingerprint=normalise_fingerprint(agent_tls_fingerprint),
            mail_certificate_id=default.id,
            default_certificate_id=default.id,
            desired_generation=0,
            applied_generation=0,
        )
        try:
            await self.repo.add(server)
        except IntegrityError:
            raise ServerExists(f"a server named {name!r} exists") from None
        await servers_changed(self.repo.session, [server.id], "server registered", names={})
        await self.repo.session.refresh(server)
        return server

    async def etag(self, server_id: str) -> str | None:
        """The server's entity tag now, pending changes included (app/preconditions.py)."""
        version = await row_version(self.repo.session, Server, server_id)
        return None if version is None else server_tag(server_id, version)

    async def _require(self, expected: Precondition, server_id: str) -> None:
        """If-Match on the server: its row locked first, then compared, in the writing transaction."""
        if expected.given:
            if not await self.repo.lock(server_id):
                raise NotFound("server not found")
            expected.require(await self.etag(server_id))

    async def patch(self, server_id: str, changes: dict, expected: Precondition = NO_PRECONDITION) -> Server:
        await self._require(expected, server_id)
        server = await self.get(server_id)
        if "name" in changes and changes["name"] is not None:
            server.name = changes["name"]
        if "tls_front" in changes:
            # Nothing served changes (the agent's own configuration runs the front), so no new
            # generation: only what the controller says about the ports does.
            _check_front(server.software, changes["tls_front"])
            server.tls_front = changes["tls_front"]
        redeploy = False
        if "agent_url" in changes:
            server.agent_url = normalise_agent_url(changes["agent_url"])
            redeploy = True
        if "agent_tls_fingerprint" in changes:
            server.agent_tls_fingerprint = normalise_fingerprint(changes["agent_tls_fingerprint"])
            redeploy = True
        try:
            await self.repo.session.flush()
        except IntegrityError:
            raise ServerExists("a server with this name exists") from None
        if redeploy:
            # A new agent knows nothing yet: the current state goes out as a new generation.
            await forget_applied(self.repo.session, server.id)
            await servers_changed(self.repo.session, [server.id], "agent changed", names={})
            await self.repo.session.refresh(server)
        return server

    async def _server_certificate(self, server: Server, certificate_id: str) -> tuple[Certificate, list[rules.Warning]]:
        """The rules every server-level certificate follows (the server-wide mail certificate and
        the webmail default): a platform certificate, in date, covering the server's host name
        (both are presented for that name and for clients that send no SNI); the same warnings
        as a binding (self-signed, untrusted, expiring)."""
        cert = await self.certificates.repo.get(certificate_id)
        # Serialised with a replace of the same certificate, as a bind is: the names judged
        # below are the ones that stay.
        if cert is None or not await self.certificates.repo.lock(cert):
            raise NotFound("certificate not found")
        if cert.account_id is not None:
            # Whoever owns it could replace its material for every domain on the server.
            raise CertificateNotPlatform(
                "a server-level certificate must be a platform certificate (uploaded without an account); "
                "this one belongs to an account"
            )
        now = utc_now()
        rules.check_bindable(cert, server.hostname, now)
        return cert, rules.certificate_warnings(cert, now, self.expiring_days)

    async def set_mail_certificate(self, server_id: str, certificate_id: str, expected: Precondition = NO_PRECONDITION,
                                   *, caller: Caller) -> tuple[Server, Certificate, list[rules.Warning]]:
        server = await self.get(server_id)
        cert, warnings = await self._server_certificate(server, certificate_id)
        await self._require(expected, server_id)  # the server after the certificate, as a bind locks them
        if server.mail_certificate_id != cert.id:
            previous = server.mail_certificate_id
            old = await self.repo.session.get(Certificate, previous)
            # A domain without a mail binding is served this certificate for mail.<d>: where
            # the old or new one names it, its autoconfiguration may change (rules.py).
            touched = rules.mail_names_named(cert.sans) + rules.mail_names_named(old.sans if old else [])
            server.mail_certificate_id = cert.id
            await self._changed(server, "server-wide mail certificate changed", names=touched)
            self._event(EventKind.SERVER_MAIL_CERTIFICATE_CHANGED, caller, server, cert, previous)
        return server, cert, warnings

    async def set_webmail_certificate(self, server_id: str, certificate_id: str, expected: Precondition = NO_PRECONDITION,
                                      *, caller: Caller) -> tuple[Server, Certificate, list[rules.Warning]]:
        """Choose what HTTPS presents without SNI, for the host name and for unbound webmail names."""
        server = await self.get(server_id)
        cert, warnings = await self._server_certificate(server, certificate_id)
        await self._require(expected, server_id)  # the server after the certificate, as a bind locks them
        await self._lock(server)
        if server.webmail_certificate_id != cert.id:
            changes_served = server.webmail_default_id != cert.id
            previous = server.webmail_certificate_id
            server.webmail_certificate_id = cert.id
            await self._changed(server, "webmail default certificate changed", redeploy=changes_served)
            self._event(EventKind.SERVER_WEBMAIL_CERTIFICATE_CHANGED, caller, server, cert, previous)
        return server, cert, warnings

    async def unset_webmail_certificate(self, server_id: str, expected: Precondition = NO_PRECONDITION, *,
                                        caller: Caller) -> Server:
        """Back to the default: the server-wide mail certificate. 404 when none was chosen."""
        server = await self.get(server_id)
        await self._require(expected, server_id)
        await self._lock(server)
        if server.webmail_certificate_id is None:
            raise WebmailCertificateNotSet(
                "no webmail default certificate is chosen; the server-wide mail certificate is presented"
            )
        changes_served = server.webmail_certificate_id != server.mail_certificate_id
        previous = server.webmail_certificate_id
        server.webmail_certificate_id = None
        await self._changed(server, "webmail default certificate unset", redeploy=changes_served)
        self._event(EventKind.SERVER_WEBMAIL_CERTIFICATE_CHANGED, caller, server, None, previous)
        return server

    def _event(self, kind: EventKind, caller: Caller, server: Server, cert: Certificate | None,
               previous: str | None) -> None:
        """A server-level certificate changed: the platform's event (no account), for admins."""
        record(self.repo.session, kind, caller, account_id=None,
               subjects={"server": server.id, "certificate": cert.id if cert else None, "previous_certificate": previous},
               data={"hostname": server.hostname, "certificate_id": cert.id if cert else None,
                     "fingerprint_sha256": cert.fingerprint_sha256 if cert else None,
                     "previous_certificate_id": previous})

    async def _lock(self, server: Server) -> None:
        """Take the server's row and read it again: whether a change alters what is served is
        then judged on committed values, so of two concurrent changes the later one sees the
        earlier and never skips the new generation it needs. Taken after the certificate's
        lock, in the order binds take them."""
        await self.repo.lock(server.id)
        await self.repo.session.refresh(server)

    async def _changed(self, server: Server, reason: str, *, redeploy: bool = True,
                       names: list[str] | None = None) -> None:
        """Flush a change of a server-level certificate; a new generation when what the server
        presents changed (the document's scalars are re-read by every delivery; ``names``: host
        names whose desired state may move with it, see ``set_mail_certificate``); the TLS
        summary of the domains left to the server's defaults (app/domains/tls_upkeep.py), once
        the server's row is written (and so locked)."""
        await self.repo.session.flush()
        if redeploy:
            await servers_changed(self.repo.session, [server.id], reason, names={server.id: names or []})
        await tls_upkeep.unbound_on(self.repo.session, server.id)
        await self.repo.session.refresh(server)

    async def delete(self, server_id: str, expected: Precondition = NO_PRECONDITION) -> None:
        await self._require(expected, server_id)
        server = await self.get(server_id)
        count = await self.repo.count_domains(server.id)
        if count:
            raise ServerInUse(f"{count} domains use this server; move or delete them first", domains=count)
        defaults = {server.mail_certificate_id, server.default_certificate_id, server.webmail_certificate_id} - {None}
        try:
            await self.repo.delete(server)
        except IntegrityError:
            # A domain added by a concurrent request committed after the count: the foreign key
            # refuses the DELETE. The transaction only rolls back now.
            raise ServerInUse("a domain was added to this server meanwhile; move or delete it first") from None
        await self._drop_orphan_defaults(defaults)

    async def _drop_orphan_defaults(self, cert_ids: set[str]) -> None:
        """The self-signed certificate made at registration goes with its server when unused."""
        repo: CertificateRepository = self.certificates.repo
        usages = await repo.usages(list(cert_ids))
        for cert_id, used in usages.items():
            cert = await repo.get(cert_id)
            if cert is not None and not used and cert.source == "self-signed" and cert.account_id is None:
                await repo.delete(cert)


def _check_front(software: str, tls_front: str | None) -> None:
    if not front_allowed(software, tls_front):
        raise RuleViolation(f"a {tls_front} TLS front serves Dovecot's ports: it needs postfix-dovecot, not {software}")


def server_capabilities(server: Server):
    return capabilities(server.software)
