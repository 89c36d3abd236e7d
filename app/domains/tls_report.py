"""A domain's TLS status row from its facts, through the pure rules of ``rules.py``.

The same functions as ``GET /v1/domains/{d}/tls`` (``rules.service_status``,
``rules.name_deployment``, ``rules.autoconfig_hostname``) on the same facts, so a row of the
list and the single-domain status cannot disagree (tests/test_domain_tls_list.py compares them).
Also the row's flat CSV form for the export.

Two ways to the same row: ``row`` applies the rules to one domain (the reference), and
``RowBuilder`` applies them once per distinct input over a page or an export batch. What the
rules read of a service name and its certificate comes down to a few facts (``RowBuilder._look``'s key): whether
the presented certificate covers the name, its trust, whether it is self-signed, expired, not
yet valid or expiring, whether it is bound, the server; for mail also whether the server-wide
certificate covers the name and whether the name is the server's own host name. The builder
computes the rules' answer with the rules on the first row of each key and fills in what is
the row's own (its host name, certificate id, names and expiry): 10,000 domains make a few
dozen keys, and no row walks the mail ports again (that walk and the rules were a third of an
export, docs/performance.md section 11). Its rows are plain JSON values (times already as the JSON
text pydantic writes), serialised and flattened without conversion; the tests check that they
encode to the same bytes as ``row``'s. The export skips the dicts: ``tls_lines.LineBuilder``
writes the same rows as text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic_core import to_jsonable_python

from app.domains import rules
from app.domains.models import SERVICES
from app.domains.tls_rows import DomainTlsFacts, RowCertificate, ServerTlsFacts
from app.kit.coverage import covers_in
from app.kit.mailclients import ENDPOINTS, autoconfig_names
from app.kit.time import expired
from app.servers.software import capabilities, mail_ports


def deployment_part(state: rules.NameDeployment) -> dict:
    """``NameDeploymentOut`` as a plain dict."""
    return {"state": state.state, "reason": state.reason, "agent_code": state.agent_code, "message": state.message,
            "fingerprint": state.fingerprint, "serving": state.serving}


@functools.cache
def endpoints() -> list[dict]:
    """``AutoconfigTls.endpoints``: the same for every domain (``kit.mailclients.ENDPOINTS``)."""
    return [{"protocol": e.protocol, "port": e.port, "security": e.security} for e in ENDPOINTS]


def drift_name(domain: DomainTlsFacts, service: str, hostname: str) -> str:
    """The name whose drift observations stand for the service's: its own when bound, else ""
    (the no-SNI probes: an unbound name is served the default)."""
    return hostname if domain.bound[service] else ""


def row(domain: DomainTlsFacts, server: ServerTlsFacts, now: datetime, expiring_days: int,
        drifted: frozenset | set = frozenset()) -> dict:
    """The ``DomainTlsRow`` of one domain as a plain dict in the model's field order, every rule
    applied to this domain alone (the reference ``RowBuilder`` is tested against)."""
    facts = server.server
    per_domain = capabilities(facts.software).per_domain_mail
    ports = mail_ports(facts.software, facts.tls_front)
    up_to_date = facts.applied_generation >= facts.desired_generation
    parts = {}
    warns = False
    for service in SERVICES:
        cert = domain.presented[service]
        status = rules.service_status(
            service, domain.name, cert, "binding" if domain.bound[service] else "server-default",
            server_hostname=facts.hostname, server_cert=server.certificate, per_domain_mail=per_domain,
            now=now, expiring_days=expiring_days, ports=ports if service == "mail" else (),
        )
        deployment = rules.name_deployment(
            service, status.hostname, cert.fingerprint_sha256, has_agent=bool(facts.agent_url),
            up_to_date=up_to_date, failed_names=server.failed_names,
        )
        part = {
            "hostname": status.hostname, "source": status.source, "certificate_id": cert.id,
            "certificate_names": cert.sans, "not_after": cert.not_after, "client_warning": status.client_warning,
            "reasons": status.reasons, "notices": status.notices, "deployment": deployment_part(deployment),
            "drifted": (domain.server_id, drift_name(domain, service, status.hostname), service) in drifted,
        }
        if service == "mail":
            part["recommended_client_hostname"] = status.recommended_client_hostname
            part["recommendation_reason"] = status.recommendation_reason
            part["recommended_ports"] = status.recommended_ports
            mail_status = status
        warns = warns or status.client_warning
        parts[service] = part
    autoconfig = {
        "hostname": rules.autoconfig_hostname(mail_status, facts.hostname), "endpoints": endpoints(),
        "names": autoconfig_names(domain.name),
        "uncovered_names": rules.autoconfig_uncovered(domain.presented["webmail"], domain.name),
        "deployed": up_to_date,
    }
    return {"domain": domain.name, "server_id": domain.server_id, "account_id": domain.account_id,
            "client_warning": warns, "not_after": domain.soonest, **parts, "autoconfig": autoconfig}


@dataclass(frozen=True)
class _Server:
    """What every row of one server shares."""

    facts: ServerTlsFacts
    hostname: str
    certificate_names: frozenset[str]
    per_domain_mail: bool
    ports: tuple
    up_to_date: bool


@dataclass
class _Answer:
    """The rules' answer for one service of one key: the part without its host name."""

    part: dict
    own: bool  # recommended_client_hostname is the row's own host name
    autoconfig_hostname: str | None  # None: the row's own host name
    text: object = None  # its constant JSON and CSV text, made on first use (``tls_lines``)


class RowBuilder:
    """``row``'s answers for many domains, each rule evaluated once per distinct input.

    One builder per page or export batch: the certificates of a batch are read once
    (``tls_rows._facts``), so within it a certificate id stands for one set of facts.
    """

    def __init__(self, servers: dict[str, ServerTlsFacts], now: datetime, expiring_days: int,
                 drifted: frozenset | set = frozenset()):
        self.servers = servers
        self.now = now
        self.expiring_days = expiring_days
        self.drifted = drifted
        self._server_cache: dict[str, _Server] = {}
        self._answers: dict[tuple, _Answer] = {}
        self._certificates: dict[str, tuple] = {}
        self._times: dict[datetime, str] = {}
        self._expiring = timedelta(days=expiring_days)

    def row(self, domain: DomainTlsFacts) -> dict:
        """The row of one domain: plain JSON values, equal in its JSON text to ``row``'s."""
        server = self._server(domain.server_id)
        name = domain.name
        webmail_cert, mail_cert = domain.presented["webmail"], domain.presented["mail"]
        webmail, _ = self._part("webmail", domain, webmail_cert, server)
        mail, autoconfig_hostname = self._part("mail", domain, mail_cert, server)
        names = autoconfig_names(name)
        return {
            "domain": name, "server_id": domain.server_id, "account_id": domain.account_id,
            "client_warning": webmail["client_warning"] or mail["client_warning"],
            "not_after": (webmail if webmail_cert.not_after <= mail_cert.not_after else mail)["not_after"],
            "webmail": webmail, "mail": mail,
            "autoconfig": {"hostname": autoconfig_hostname, "endpoints": endpoints(), "names": names,
                           "uncovered_names": [n for n in names if not covers_in(webmail_cert.names, n)],
                           "deployed": server.up_to_date},
        }

    def _server(self, server_id: str) -> _Server:
        found = self._server_cache.get(server_id)
        if found is None:
            server = self.servers[server_id]
            facts = server.server
            found = self._server_cache[server_id] = _Server(
                server, facts.hostname, frozenset(server.certificate.sans),
                capabilities(facts.software).per_domain_mail, mail_ports(facts.software, facts.tls_front),
                facts.applied_generation >= facts.desired_generation)
        return found

    def _look(self, service: str, domain: DomainTlsFacts, cert: RowCertificate,
              server: _Server) -> tuple[_Answer, str, bool]:
        """The rules' answer for the service of this domain (evaluated once per key), its host
        name, and whether that name drifted."""
        hostname = f"{service}.{domain.name}"
        bound = domain.bound[service]
        key = (service, domain.server_id, bound, covers_in(cert.names, hostname), self._certificate(cert))
        if service == "mail":  # what else the mail rules read of the name (module docstring)
            key += (covers_in(server.certificate_names, hostname), hostname == server.hostname)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self._answer(service, domain, cert, server)
        return answer, hostname, self.drifted_name(service, domain, hostname)

    def drifted_name(self, service: str, domain: DomainTlsFacts, hostname: str) -> bool:
        """Whether the service's name (``drift_name``) drifted on the domain's server."""
        return bool(self.drifted) and (domain.server_id, drift_name(domain, service, hostname), service) in self.drifted

    def _part(self, service: str, domain: DomainTlsFacts, cert: RowCertificate, server: _Server) -> tuple[dict, str]:
        """The service's part of the row, and the host name autoconfiguration advertises."""
        answer, hostname, drifted = self._look(service, domain, cert, server)
        part = answer.part.copy()
        part["hostname"] = hostname
        part["certificate_id"] = cert.id
        part["certificate_names"] = cert.sans
        part["not_after"] = self._time(cert.not_after)
        if answer.own:
            part["recommended_client_hostname"] = hostname
        if server.facts.failed_names:  # a failure names a host name: per row (rare)
            part["deployment"] = deployment_part(self._deployment(service, hostname, cert, server))
        part["drifted"] = drifted
        return part, answer.autoconfig_hostname or hostname

    def _certificate(self, cert: RowCertificate) -> tuple:
        """What the rules read of a certificate besides its names (``client_warning_reasons``,
        the ``certificate_expiring`` notice): once per certificate of the batch."""
        found = self._certificates.get(cert.id)
        if found is None:
            now = self.now
            found = self._certificates[cert.id] = (
                cert.trusted, cert.self_signed, expired(cert.not_after, now), now < cert.not_before,
                cert.not_after - now < self._expiring)
        return found

    def _deployment(self, service: str, hostname: str, cert: RowCertificate, server: _Server) -> rules.NameDeployment:
        return rules.name_deployment(service, hostname, cert.fingerprint_sha256,
                                     has_agent=bool(server.facts.server.agent_url), up_to_date=server.up_to_date,
                                     failed_names=server.facts.failed_names)

    def _answer(self, service: str, domain: DomainTlsFacts, cert: RowCertificate, server: _Server) -> _Answer:
        """The rules applied to the first domain of a key; what is the row's own is filled in per
        row (``_part``). Without failed names the deployment state reads neither the name nor
        the fingerprint (``rules.name_deployment``)."""
        status = rules.service_status(
            service, domain.name, cert, "binding" if domain.bound[service] else "server-default",
            server_hostname=server.hostname, server_cert=server.facts.certificate,
            per_domain_mail=server.per_domain_mail, now=self.now, expiring_days=self.expiring_days,
            ports=server.ports if service == "mail" else (),
        )
        part = {
            "hostname": None, "source": status.source, "certificate_id": cert.id, "certificate_names": cert.sans,
            "not_after": self._time(cert.not_after), "client_warning": status.client_warning,
            "reasons": status.reasons, "notices": status.notices,
            "deployment": deployment_part(self._deployment(service, status.hostname, cert, server)), "drifted": False,
        }
        own, autoconfig = False, None
        if service == "mail":
            own = status.recommended_client_hostname == status.hostname
            part["recommended_client_hostname"] = None if own else status.recommended_client_hostname
            part["recommendation_reason"] = status.recommendation_reason
            part["recommended_ports"] = status.recommended_ports
            autoconfig = rules.autoconfig_hostname(status, server.hostname)
            autoconfig = None if autoconfig == status.hostname else autoconfig
        return _Answer(part, own, autoconfig)

    def _time(self, value: datetime) -> str:
        text = self._times.get(value)
        if text is None:
            text = self._times[value] = to_jsonable_python(value)
        return text


CSV_COLUMNS = (
    "domain", "server_id", "account_id", "client_warning", "not_after",
    *(f"{s}_{c}" for s in SERVICES for c in (
        "hostname", "source", "certificate_id", "certificate_names", "not_after", "client_warning", "reasons",
        "notices", "deployment_state", "deployment_agent_code", "drifted")),
    "mail_recommended_client_hostname", "mail_recommendation_reason", "mail_recommended_ports",
    "autoconfig_hostname", "autoconfig_endpoints", "autoconfig_names", "autoconfig_uncovered_names",
    "autoconfig_deployed",
)
"""The export's CSV header: a row flattened, lists joined by spaces (host names and codes
contain none), the deployment's state and agent code (its free-text message is left out), the
autoconfiguration's endpoints as ``protocol:port:security`` (``imap:993:tls``)."""


def csv_record(item: dict) -> list[str]:
    """One CSV record in ``CSV_COLUMNS`` order, from a row as JSON would carry it."""
    out = [item["domain"], item["server_id"], item["account_id"], flag(item["client_warning"]), item["not_after"]]
    for service in SERVICES:
        part = item[service]
        out += [part["hostname"], part["source"], part["certificate_id"], " ".join(part["certificate_names"]),
                part["not_after"], flag(part["client_warning"]), " ".join(part["reasons"]),
                " ".join(part["notices"]), part["deployment"]["state"], part["deployment"]["agent_code"] or "",
                flag(part["drifted"])]
    mail, autoconfig = item["mail"], item["autoconfig"]
    out += [mail["recommended_client_hostname"] or "", mail["recommendation_reason"] or "",
            " ".join(str(p) for p in mail["recommended_ports"]),
            autoconfig["hostname"], _flat_endpoints(autoconfig["endpoints"]), " ".join(autoconfig["names"]),
            " ".join(autoconfig["uncovered_names"]), flag(autoconfig["deployed"])]
    return out


def _flat_endpoints(values: list[dict]) -> str:
    if values is endpoints():  # every row's: flattened once
        return endpoints_text()
    return " ".join(f"{e['protocol']}:{e['port']}:{e['security']}" for e in values)


@functools.cache
def endpoints_text() -> str:
    """Every row's ``autoconfig_endpoints`` field: flattened once."""
    return " ".join(f"{e['protocol']}:{e['port']}:{e['security']}" for e in endpoints())


def flag(value: bool) -> str:
    """A boolean as the CSV writes it (and JSON)."""
    return "true" if value else "false"
