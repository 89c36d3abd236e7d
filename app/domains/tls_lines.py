"""A domain's TLS status row written directly as an NDJSON line or a CSV record (the export).

Building each row as dicts and lists and then serialising it (``pydantic_core.to_json``, or
``csv_record`` and ``csv.writer``) was most of what an export cost once the rules ran once per
key (docs/performance.md section 11). Most of a row's text is the same for thousands of rows:
what ``RowBuilder`` answers per key (source, warning, reasons, notices, deployment, the mail
recommendation) and what it reads per certificate (id, names, expiry). ``LineBuilder`` writes
that text once per key and once per certificate, and a row is those pieces joined with the
row's own values: its name and host names, account, drift flags and the autoconfiguration
names its webmail certificate leaves uncovered.

The text is the same, byte for byte, as ``to_json(RowBuilder.row(d))`` (compact JSON, RFC
8259) and as ``csv.writer`` over ``tls_report.csv_record`` (RFC 4180, quoted only where
needed): every piece is written by those same encoders, and the row's own strings are
inserted unescaped only when they need no escaping in either format. A name that would
(stored names are A-labels, which never do) takes the general path. tests/test_domain_tls_list.py
compares both paths on every kind of row.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass

from pydantic_core import to_json

from app.domains.tls_report import (
    RowBuilder,
    csv_record,
    deployment_part,
    endpoints,
    endpoints_text,
    flag,
)
from app.domains.tls_rows import CertificateCache, DomainTlsFacts, RowCertificate
from app.kit.bounded import keep
from app.kit.coverage import covers_in
from app.kit.mailclients import autoconfig_names
from app.kit.time import expired

_PLAIN = re.compile(r"[0-9A-Za-z._-]+")
"""A name of these characters needs no escape in JSON (RFC 8259 section 7: only the quote,
the backslash and control characters do) and no quoting in CSV (RFC 4180: comma, quote, line
break), nor do the host names made from it."""

_CSV_QUOTED = re.compile(r'[,"\r\n]')


def json_text(value) -> str:
    return to_json(value).decode()


def csv_field(value: str) -> str:
    """One field as ``csv.writer`` writes it (``QUOTE_MINIMAL``): quoted, with its quotes
    doubled, when it holds a comma, a quote or a line break."""
    if _CSV_QUOTED.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_text(records: list) -> str:
    """RFC 4180 records (CRLF line ends, quoted where needed)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(records)
    return buffer.getvalue()


@functools.cache
def _endpoints_json() -> str:
    return json_text(endpoints())


_QUOTED_COMMA = '","'


def _json_names(names: list[str]) -> str:
    """A list of plain names (``_PLAIN``) as JSON."""
    return f'["{_QUOTED_COMMA.join(names)}"]' if names else "[]"


@dataclass(frozen=True)
class _Text:
    """The text of one key's answer (``tls_report._Answer``) around a row's own values."""

    json_source: str  # ,"source":…,"certificate_id":
    json_checks: str  # ,"client_warning":…,"reasons":…,"notices":…,"deployment":
    json_deployment: str
    json_recommended: str  # recommended_client_hostname when not the row's own (mail)
    json_mail: str  # ,"recommendation_reason":…,"recommended_ports":… (mail)
    json_autoconfig: str | None  # the host name autoconfiguration advertises; None: the row's own (``_part``)
    csv_source: str
    csv_checks: str  # client_warning,reasons,notices
    csv_deployment: str  # state,agent_code
    csv_recommended: str
    csv_mail: str  # recommendation_reason,recommended_ports
    csv_autoconfig: str | None
    warns: bool

    @classmethod
    def of(cls, answer) -> _Text:
        part = answer.part
        mail = "recommended_ports" in part
        deployment = part["deployment"]
        recommended = part.get("recommended_client_hostname")
        return cls(
            json_source=f',"source":{json_text(part["source"])},"certificate_id":',
            json_checks=(f',"client_warning":{json_text(part["client_warning"])},"reasons":'
                         f'{json_text(part["reasons"])},"notices":{json_text(part["notices"])},"deployment":'),
            json_deployment=json_text(deployment),
            json_recommended=json_text(recommended),
            json_mail=(f',"recommendation_reason":{json_text(part["recommendation_reason"])},'
                       f'"recommended_ports":{json_text(part["recommended_ports"])}') if mail else "",
            json_autoconfig=json_text(answer.autoconfig_hostname) if answer.autoconfig_hostname else None,
            csv_source=csv_field(part["source"]),
            csv_checks=",".join(csv_field(v) for v in (flag(part["client_warning"]), " ".join(part["reasons"]),
                                                       " ".join(part["notices"]))),
            csv_deployment=_csv_deployment(deployment),
            csv_recommended=csv_field(recommended or ""),
            csv_mail=(csv_field(part["recommendation_reason"] or "") + ","
                      + csv_field(" ".join(str(p) for p in part["recommended_ports"]))) if mail else "",
            csv_autoconfig=csv_field(answer.autoconfig_hostname) if answer.autoconfig_hostname else None,
            warns=part["client_warning"],
        )


def _text(answer) -> _Text:
    answer.text = _Text.of(answer)
    return answer.text


def _csv_deployment(deployment: dict) -> str:
    return csv_field(deployment["state"]) + "," + csv_field(deployment["agent_code"] or "")


_FLAG = {False: "false", True: "true"}  # tls_report.flag, looked up


class RowTexts:
    """The JSON text of the rows of recent pages, by domain name, each with everything it was
    written from (``LineBuilder._inputs``): the row's own values, the two certificates, what
    the rows of its server share, what the moment makes of each certificate and of the server's
    (expired, not yet valid, expiring), the drift flags. A row is text made by pure functions of
    those, so it is reused exactly when they are equal (compared as values; the same objects
    when nothing changed: the certificates come from the page memory's ``CertificateCache``, the server's
    facts are kept here while equal). Bounded: the oldest entries go first."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._entries: dict[str, tuple[tuple, str]] = {}
        self._contexts: dict[str, tuple] = {}

    def get(self, name: str, inputs: tuple) -> str | None:
        found = self._entries.get(name)
        return found[1] if found is not None and found[0] == inputs else None

    def put(self, name: str, inputs: tuple, text: str) -> None:
        keep(self._entries, name, (inputs, text), self.size)

    def context(self, server_id: str, context: tuple) -> tuple:
        """``context`` itself, or the equal one kept for the server (so rows compare it by identity)."""
        kept = self._contexts.get(server_id)
        if kept is not None and kept == context:
            return kept
        if len(self._contexts) >= self.size:
            self._contexts.clear()
        self._contexts[server_id] = context
        return context

    def clear(self) -> None:
        self._entries.clear()
        self._contexts.clear()


class LineBuilder(RowBuilder):
    """``RowBuilder`` whose rows come out as text: ``json_line`` (without the line end) and
    ``csv_line`` (with its CRLF). One per export batch, like the builder."""

    def __init__(self, *args, certificates: CertificateCache | None = None, rows: RowTexts | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._shared = certificates  # a page's: its certificates' JSON kept from page to page
        self._rows = rows  # a page's: its rows' JSON kept from page to page
        self._contexts: dict[str, tuple] = {}
        self._cert_json: dict[str, tuple[str, str]] = {}
        self._cert_csv: dict[str, tuple[str, str]] = {}
        self._time_json: dict = {}
        self._ids: dict[str, tuple[str, str]] = {}  # server and account ids as JSON and CSV

    def json_line(self, domain: DomainTlsFacts) -> str:
        """``to_json(self.row(domain))`` as text (kept in ``rows`` when given)."""
        rows = self._rows
        if rows is None:
            return self._json_line(domain)
        inputs = self._inputs(domain)
        text = rows.get(domain.name, inputs)
        if text is None:
            text = self._json_line(domain)
            rows.put(domain.name, inputs, text)
        return text

    def _inputs(self, domain: DomainTlsFacts) -> tuple:
        """Everything ``_json_line`` reads for the row, as values (``RowTexts``): the row's own
        facts, its certificates and what the moment makes of them, its server's context, drift."""
        web, mail = domain.presented["webmail"], domain.presented["mail"]
        bound = domain.bound
        server_id = domain.server_id
        if self.drifted:
            web_drifted = self.drifted_name("webmail", domain, f"webmail.{domain.name}")
            mail_drifted = self.drifted_name("mail", domain, f"mail.{domain.name}")
        else:
            web_drifted = mail_drifted = False
        return (server_id, domain.account_id, bound["webmail"], bound["mail"], web, mail,
                self._contexts.get(server_id) or self._context(server_id),
                self._certificate(web), self._certificate(mail), web_drifted, mail_drifted)

    def _context(self, server_id: str) -> tuple:
        """What every row of the server reads of it and of the moment: its facts, whether its
        mail certificate is expired or not yet valid now (``rules.server_certificate_usable``,
        the ports' reasons), and the expiring threshold."""
        server = self.servers[server_id]
        cert, now = server.certificate, self.now
        context = (server, expired(cert.not_after, now), now < cert.not_before, self.expiring_days)
        found = self._contexts[server_id] = self._rows.context(server_id, context) if self._rows else context
        return found

    def _json_line(self, domain: DomainTlsFacts) -> str:
        name = domain.name
        if not _PLAIN.fullmatch(name):
            return json_text(self.row(domain))
        (server, web, mail, web_text, web_host, web_drifted,
         mail_answer, mail_text, mail_host, mail_drifted) = self._both(domain)
        web_cert = self._cert_json.get(web.id) or self._json_of(web)
        mail_cert = self._cert_json.get(mail.id) or self._json_of(mail)
        web_deployment, mail_deployment = web_text.json_deployment, mail_text.json_deployment
        if server.facts.failed_names:  # a failure names a host name: per row (rare)
            web_deployment = json_text(deployment_part(self._deployment("webmail", web_host, web, server)))
            mail_deployment = json_text(deployment_part(self._deployment("mail", mail_host, mail, server)))
        own = f'"{mail_host}"'
        names = autoconfig_names(name)
        uncovered = [n for n in names if not covers_in(web.names, n)]
        return (
            f'{{"domain":"{name}","server_id":{(self._ids.get(domain.server_id) or self._id(domain.server_id))[0]},'
            f'"account_id":{(self._ids.get(domain.account_id) or self._id(domain.account_id))[0]},'
            f'"client_warning":{_FLAG[web_text.warns or mail_text.warns]},'
            f'"not_after":{(web_cert if web.not_after <= mail.not_after else mail_cert)[1]},'
            f'"webmail":{{"hostname":"{web_host}"{web_text.json_source}{web_cert[0]}{web_text.json_checks}'
            f'{web_deployment},"drifted":{_FLAG[web_drifted]}}},'
            f'"mail":{{"hostname":{own}{mail_text.json_source}{mail_cert[0]}{mail_text.json_checks}'
            f'{mail_deployment},"drifted":{_FLAG[mail_drifted]},'
            f'"recommended_client_hostname":{own if mail_answer.own else mail_text.json_recommended}'
            f'{mail_text.json_mail}}},'
            f'"autoconfig":{{"hostname":{mail_text.json_autoconfig or own},"endpoints":{_endpoints_json()},'
            f'"names":["{_QUOTED_COMMA.join(names)}"],'
            f'"uncovered_names":{_json_names(uncovered)},"deployed":{_FLAG[server.up_to_date]}}}}}'
        )

    def csv_line(self, domain: DomainTlsFacts) -> str:
        """``csv.writer``'s line for ``csv_record(self.row(domain))``, CRLF included."""
        name = domain.name
        if not _PLAIN.fullmatch(name):
            return csv_text([csv_record(self.row(domain))])
        (server, web, mail, web_text, web_host, web_drifted,
         mail_answer, mail_text, mail_host, mail_drifted) = self._both(domain)
        web_cert = self._cert_csv.get(web.id) or self._csv_of(web)
        mail_cert = self._cert_csv.get(mail.id) or self._csv_of(mail)
        web_deployment, mail_deployment = web_text.csv_deployment, mail_text.csv_deployment
        if server.facts.failed_names:
            web_deployment = _csv_deployment(deployment_part(self._deployment("webmail", web_host, web, server)))
            mail_deployment = _csv_deployment(deployment_part(self._deployment("mail", mail_host, mail, server)))
        names = autoconfig_names(name)
        uncovered = " ".join([n for n in names if not covers_in(web.names, n)])
        return (
            f'{name},{(self._ids.get(domain.server_id) or self._id(domain.server_id))[1]},'
            f'{(self._ids.get(domain.account_id) or self._id(domain.account_id))[1]},'
            f'{_FLAG[web_text.warns or mail_text.warns]},'
            f'{(web_cert if web.not_after <= mail.not_after else mail_cert)[1]},'
            f'{web_host},{web_text.csv_source},{web_cert[0]},{web_text.csv_checks},{web_deployment},'
            f'{_FLAG[web_drifted]},'
            f'{mail_host},{mail_text.csv_source},{mail_cert[0]},{mail_text.csv_checks},{mail_deployment},'
            f'{_FLAG[mail_drifted]},'
            f'{mail_host if mail_answer.own else mail_text.csv_recommended},{mail_text.csv_mail},'
            f'{mail_text.csv_autoconfig or mail_host},{_endpoints_csv()},{" ".join(names)},{uncovered},'
            f'{_FLAG[server.up_to_date]}\r\n'
        )

    def _both(self, domain: DomainTlsFacts) -> tuple:
        """The server, the two certificates, then for webmail the text of the rules' answer, the
        host name and whether it drifted, and for mail the same with the answer itself."""
        server = self._server(domain.server_id)
        web, mail = domain.presented["webmail"], domain.presented["mail"]
        web_answer, web_host, web_drifted = self._look("webmail", domain, web, server)
        mail_answer, mail_host, mail_drifted = self._look("mail", domain, mail, server)
        return (server, web, mail, web_answer.text or _text(web_answer), web_host, web_drifted,
                mail_answer, mail_answer.text or _text(mail_answer), mail_host, mail_drifted)

    def _json_of(self, cert: RowCertificate) -> tuple[str, str]:
        """A certificate's id, names and expiry as the JSON of a part (from ``certificate_id``'s
        value to ``not_after``'s), and its expiry alone: once per certificate of the batch, or
        of the cache of pages (``tls_rows.CertificateCache``)."""
        shared = self._shared
        if shared is not None:
            found = shared.text(cert)
            if found is None:
                found = self._json_text_of(cert)
                shared.keep_text(cert, found)
            self._cert_json[cert.id] = found
            return found
        return self._json_text_of(cert)

    def _json_text_of(self, cert: RowCertificate) -> tuple[str, str]:
        time = self._time_json.get(cert.not_after)
        if time is None:
            time = self._time_json[cert.not_after] = json_text(self._time(cert.not_after))
        found = self._cert_json[cert.id] = (
            f'{json_text(cert.id)},"certificate_names":{json_text(cert.sans)},"not_after":{time}', time)
        return found

    def _csv_of(self, cert: RowCertificate) -> tuple[str, str]:
        """The same as CSV fields."""
        time = csv_field(self._time(cert.not_after))
        found = self._cert_csv[cert.id] = (f'{csv_field(cert.id)},{csv_field(" ".join(cert.sans))},{time}', time)
        return found

    def _id(self, value: str) -> tuple[str, str]:
        found = self._ids[value] = (json_text(value), csv_field(value))
        return found


@functools.cache
def _endpoints_csv() -> str:
    return csv_field(endpoints_text())
