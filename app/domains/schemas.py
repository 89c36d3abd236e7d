from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.paging import Page
from app.schemas import Strict, WarningOut

Service = Literal["webmail", "mail"]

CLIENT_WARNING_REASONS = (
    "hostname_not_covered", "self_signed", "certificate_untrusted", "certificate_expired", "certificate_not_yet_valid",
)
"""Why a client would warn (app.domains.rules.client_warning_reasons)."""
NOTICES = ("certificate_expiring", "server_certificate_untrusted")
"""Worth knowing, no client warning (app.domains.rules.service_status)."""
RECOMMENDATION_REASONS = ("no_sni_support", "mail_hostname_warns", "server_certificate_untrusted")
"""Why mail clients should use another host name than ``mail.<domain>`` (app.domains.rules.service_status)."""
AGENT_CODES = ("invalid_bundle", "key_refused", "handshake_failed", "verify_failed", "config_refused")
"""Why the agent could not serve a name (app/agent/isolation.py)."""


def _examples(*values: dict) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(values)})


class DomainCreate(Strict):
    model_config = _examples({"name": ex.DOMAIN, "server_id": ex.SERVER_ID, "account_id": ex.ACCOUNT_ID})

    name: str = Field(min_length=1, max_length=253, description="e.g. example.com or bücher.example (stored as A-labels)",
                      examples=[ex.DOMAIN])
    server_id: str = Field(description="The server that hosts its mail and webmail.", examples=[ex.SERVER_ID])
    account_id: str = Field(description="The customer account that owns it.", examples=[ex.ACCOUNT_ID])


DOMAIN_EXAMPLE = {"id": ex.DOMAIN_ID, "name": ex.DOMAIN, "server_id": ex.SERVER_ID, "account_id": ex.ACCOUNT_ID,
                  "created_at": ex.CREATED}


class DomainOut(BaseModel):
    model_config = _examples(DOMAIN_EXAMPLE)

    id: str = Field(description="The domain's id.", examples=[ex.DOMAIN_ID])
    name: str = Field(description="The domain name in A-labels (`xn--bcher-kva.example` for bücher.example).",
                      examples=[ex.DOMAIN])
    server_id: str = Field(description="The server that hosts it.", examples=[ex.SERVER_ID])
    account_id: str = Field(description="The customer account that owns it.", examples=[ex.ACCOUNT_ID])
    created_at: datetime = Field(description="When it was added (UTC).", examples=[ex.CREATED])


class DomainPage(Page[DomainOut]):
    """A page of domains, in name order."""

    model_config = ex.page(DOMAIN_EXAMPLE, ex.cursor("domains", ex.DOMAIN))


class BindingIn(Strict):
    model_config = _examples({"certificate_id": ex.CERTIFICATE_ID})

    certificate_id: str = Field(description="The certificate to serve; it must cover the name, be in date and "
                                "belong to the domain's account or the platform.", examples=[ex.CERTIFICATE_ID])


class NameDeploymentOut(BaseModel):
    """Whether what is bound here is what the server serves (docs/architecture.md, blast radius)."""

    model_config = _examples({"state": "deployed", "reason": None, "agent_code": None, "message": None,
                              "fingerprint": None, "serving": None})

    state: Literal["deployed", "pending", "failed", "no_agent"] = Field(
        description="`deployed`: served; `pending`: the server has not applied the change yet; `no_agent`: nothing "
        "is deployed automatically; `failed`: the server applied its change but kept this name on what it served "
        "before, because the bound certificate cannot be served (see `agent_code`, `message`).",
        examples=["deployed"],
    )
    reason: Literal["deployment_failed"] | None = Field(None, description="`deployment_failed` when `state` is `failed`.",
                                                        examples=[None])
    agent_code: str | None = Field(
        None, description="With `failed`: `invalid_bundle`, `key_refused`, `handshake_failed`, `verify_failed` or "
        "`config_refused`.", json_schema_extra={"enum": [*AGENT_CODES, None]}, examples=["key_refused"],
    )
    message: str | None = Field(None, description="With `failed`: the agent's (OpenSSL's) words.",
                                examples=["SSL_CTX_use_PrivateKey: key values mismatch"])
    fingerprint: str | None = Field(None, description="With `failed`: the bound certificate that failed (SHA-256).",
                                    examples=[ex.FINGERPRINT])
    serving: str | None = Field(
        None, description="With `failed`: the fingerprint the name is still served; null: the server default.",
        examples=[None],
    )


BINDING_EXAMPLE = {
    "domain": ex.DOMAIN, "service": "mail", "hostname": "mail.example.com", "source": "binding",
    "certificate_id": ex.CERTIFICATE_ID, "fingerprint_sha256": ex.FINGERPRINT,
    "warnings": [{"code": "certificate_untrusted",
                  "message": "The certificate does not chain to a trusted root: clients will warn."}],
    "deployment": None,
}


class BindingOut(BaseModel):
    model_config = _examples(BINDING_EXAMPLE)

    domain: str = Field(description="The domain (A-labels).", examples=[ex.DOMAIN])
    service: Service = Field(description="`webmail` or `mail`.", examples=["mail"])
    hostname: str = Field(description="The name clients connect to: `webmail.<domain>` or `mail.<domain>`.",
                          examples=["mail.example.com"])
    source: Literal["binding", "server-default"] = Field(
        description="`binding`: a certificate bound to this domain; `server-default`: the server's own (mail: the "
        "server-wide mail certificate; webmail: the server's default).", examples=["binding"])
    certificate_id: str = Field(description="The certificate served.", examples=[ex.CERTIFICATE_ID])
    fingerprint_sha256: str = Field(description="Its SHA-256 fingerprint (hex).", examples=[ex.FINGERPRINT])
    warnings: list[WarningOut] = Field([], description="Accepted, but clients may warn (see each code).")
    deployment: NameDeploymentOut | None = Field(
        None, description="Whether the server serves it (GET; null in a binding change's answer)."
    )


class BindingsOut(BaseModel):
    model_config = _examples({
        "domain": ex.DOMAIN,
        "webmail": {**BINDING_EXAMPLE, "service": "webmail", "hostname": "webmail.example.com", "warnings": [],
                    "deployment": {"state": "deployed"}},
        "mail": {**BINDING_EXAMPLE, "deployment": {"state": "pending"}},
    })

    domain: str = Field(description="The domain (A-labels).", examples=[ex.DOMAIN])
    webmail: BindingOut = Field(description="What `webmail.<domain>` serves.")
    mail: BindingOut = Field(description="What `mail.<domain>` serves (IMAP, POP3, SMTP).")


class PresentedCertificate(BaseModel):
    id: str = Field(description="The certificate's id.", examples=[ex.CERTIFICATE_ID])
    fingerprint_sha256: str = Field(description="SHA-256 fingerprint (hex).", examples=[ex.FINGERPRINT])
    subject: str = Field(description="Subject DN (RFC 4514).", examples=[ex.SUBJECT])
    issuer: str = Field(description="Issuer DN (RFC 4514).", examples=[ex.LE_ISSUER])
    sans: list[str] = Field(description="DNS subjectAltNames.", examples=[ex.SANS])
    not_after: datetime = Field(description="Expiry (UTC).", examples=[ex.NOT_AFTER])
    self_signed: bool = Field(description="Issued by itself.", examples=[False])


class ObservedPort(BaseModel):
    """What one port of the server was last seen serving for the name (the agent's drift probes)."""

    model_config = _examples({"daemon": "dovecot", "port": 993, "protocol": "imaps",
                              "observed_at": "2026-12-01T04:05:06Z", "fingerprint": ex.FINGERPRINT,
                              "matches": True, "drifted": False, "error": None, "error_code": None})

    daemon: Literal["postfix", "dovecot", "nginx", "courier"] = Field(description="The daemon behind the port.",
                                                                     examples=["dovecot"])
    port: int = Field(description="The port probed (the agent's `verify` ports).", examples=[993])
    protocol: str = Field(description="How it was probed: `smtp-starttls`, `smtps`, `imap-starttls`, `imaps`, "
                          "`pop3-starttls`, `pop3s` or `https`.", examples=["imaps"])
    observed_at: datetime = Field(description="When the agent made the handshake (UTC).",
                                  examples=["2026-12-01T04:05:06Z"])
    fingerprint: str | None = Field(description="SHA-256 of the certificate the port presented; null: no "
                                    "handshake (see `error`).", examples=[ex.FINGERPRINT])
    matches: bool = Field(description="The port presented the certificate shown under `certificate` (what the "
                          "domain should present now).", examples=[True])
    drifted: bool = Field(description="The port presented something else than the agent last applied: changed "
                          "behind its back. A delivery that repairs it is scheduled (docs/agent.md, \"Drift\").",
                          examples=[False])
    error: str | None = Field(description="Why there was no handshake, when there was none: the agent's own words "
                              "for an admin token; for a customer token, the generic sentence of `error_code` (the "
                              "agent's words name internal addresses).", examples=[None])
    error_code: Literal["tls_handshake_failed", "no_certificate", "starttls_failed", "connection_failed",
                        "probe_failed"] | None = Field(
        description="Why there was no handshake, as a stable code; null when there was one.", examples=[None])


class ServiceTls(BaseModel):
    hostname: str = Field(description="The name clients connect to.", examples=["webmail.example.com"])
    source: Literal["binding", "server-default"] = Field(
        description="`binding`: the domain's own certificate; `server-default`: the server's.", examples=["binding"])
    certificate: PresentedCertificate = Field(description="The certificate a client is shown.")
    trusted: bool = Field(description="It chains to a trusted root.", examples=[True])
    covers_hostname: bool = Field(description="Its names cover `hostname`.", examples=[True])
    expires_at: datetime = Field(description="Its notAfter (UTC).", examples=[ex.NOT_AFTER])
    client_warning: bool = Field(description="True when a client connecting to `hostname` would warn.",
                                 examples=[False])
    reasons: list[str] = Field(description="Why it would warn (codes); empty when it would not.",
                               json_schema_extra={"items": {"type": "string", "enum": list(CLIENT_WARNING_REASONS)}},
                               examples=[[]])
    notices: list[str] = Field(description="Worth knowing, no client warning (e.g. certificate_expiring).",
                               json_schema_extra={"items": {"type": "string", "enum": list(NOTICES)}},
                               examples=[["certificate_expiring"]])
    deployment: NameDeploymentOut = Field(description="Whether the server serves it yet.")
    observed: list[ObservedPort] = Field(
        [], description="What each port was last seen serving for `hostname` (the agent probes a sample of bound "
        "names every few minutes and every name over a cycle; with `source` `server-default`, the probes without "
        "SNI, which get the same default); empty until it was probed.")


class MailPortTls(BaseModel):
    port: int = Field(description="The standard port.", examples=[993])
    protocol: Literal["smtp-starttls", "smtps", "imap-starttls", "imaps", "pop3-starttls", "pop3s"] = Field(
        description="What is spoken there (`-starttls`: plaintext first, then STARTTLS/STLS).", examples=["imaps"])
    daemon: str = Field(description="Who terminates TLS there: `postfix`, `dovecot`, `haproxy` (the TLS front), "
                        "`courier`, `qmail`, `mailenable`.", examples=["haproxy"])
    source: Literal["binding", "server-default"] = Field(
        description="`binding`: the domain's certificate (`certificate` above) is shown for `mail.<domain>`; "
        "`server-default`: the server-wide mail certificate is, whatever is bound.", examples=["binding"])
    client_warning: bool = Field(description="True when a client of `mail.<domain>` would warn on this port.",
                                 examples=[False])
    reasons: list[str] = Field(description="Why it would warn there (codes).",
                               json_schema_extra={"items": {"type": "string", "enum": list(CLIENT_WARNING_REASONS)}},
                               examples=[[]])


class MailTls(ServiceTls):
    recommended_client_hostname: str | None = Field(
        description="What to configure in mail clients: mail.<domain> when that is warning-free, "
        "else the server's host name when its certificate is trusted, else null.",
        examples=["mail.example.com"],
    )
    recommendation_reason: str | None = Field(
        description="Why `recommended_client_hostname` is not `mail.<domain>`: `no_sni_support` (the server cannot "
        "serve a per-domain mail certificate), `mail_hostname_warns`, `server_certificate_untrusted`; null when "
        "it is.", json_schema_extra={"enum": [*RECOMMENDATION_REASONS, None]}, examples=[None],
    )
    ports: list[MailPortTls] = Field(
        [], description="Per standard mail port, which certificate a client of `mail.<domain>` is shown. With a "
        "TLS front (`tls_front` on the server) IMAPS and POP3S are the front's and STARTTLS on 143/110 shows the "
        "server-wide certificate.")
    recommended_ports: list[int] = Field(
        [], description="The implicit-TLS ports (RFC 8314: 993 IMAPS, 995 POP3S, 465 SMTPS) where "
        "`recommended_client_hostname` is shown a certificate without a warning: what to configure in clients.",
        examples=[[465, 993, 995]])


class AdvertisedEndpoint(BaseModel):
    protocol: Literal["imap", "pop3", "smtp"] = Field(description="The protocol (smtp: submission).",
                                                     examples=["imap"])
    port: int = Field(description="The port clients are told to use.", examples=[993])
    security: Literal["tls", "starttls"] = Field(
        description="`tls`: implicit TLS (RFC 8314, listed first, preferred); `starttls`: second choice.",
        examples=["tls"])


class AutoconfigTls(BaseModel):
    hostname: str = Field(
        description="The host name Thunderbird autoconfig, Outlook Autodiscover and the Apple profile tell mail "
        "clients to use: `recommended_client_hostname` of `mail`, else the server's host name.",
        examples=["mail.example.com"])
    endpoints: list[AdvertisedEndpoint] = Field(
        description="Protocols and ports advertised, in order of preference (implicit TLS first).",
        examples=[[{"protocol": "imap", "port": 993, "security": "tls"}]])
    names: list[str] = Field(description="Where clients look the configuration up (served with the webmail "
                             "certificate).", examples=[["autoconfig.example.com", "autodiscover.example.com"]])
    uncovered_names: list[str] = Field(
        description="Those of `names` that the certificate served for them (the webmail one) does not cover; "
        "each makes the `autoconfig_names_not_covered` warning.", examples=[[]])
    deployed: bool = Field(description="The server applied the generation that carries this (else it still "
                           "advertises what the previous configuration said).", examples=[True])


class DeploymentState(BaseModel):
    desired_generation: int = Field(description="The server's latest configuration generation.", examples=[42])
    applied_generation: int = Field(description="The generation its agent last applied.", examples=[41])
    up_to_date: bool = Field(description="The agent applied the latest generation.", examples=[False])


_PRESENTED = {"id": ex.CERTIFICATE_ID, "fingerprint_sha256": ex.FINGERPRINT, "subject": ex.SUBJECT,
              "issuer": ex.LE_ISSUER, "sans": ex.SANS, "not_after": ex.NOT_AFTER, "self_signed": False}
_SERVICE = {"source": "binding", "certificate": _PRESENTED, "trusted": True, "covers_hostname": True,
            "expires_at": ex.NOT_AFTER, "client_warning": False, "reasons": [], "notices": [],
            "deployment": {"state": "pending", "reason": None, "agent_code": None, "message": None,
                           "fingerprint": None, "serving": None},
            "observed": [{"daemon": "nginx", "port": 443, "protocol": "https", "observed_at": "2026-12-01T04:05:06Z",
                          "fingerprint": ex.FINGERPRINT, "matches": True, "drifted": False, "error": None,
                          "error_code": None}]}


_PORTS = [
    {"port": p, "protocol": proto, "daemon": daemon, "source": source, "client_warning": warns,
     "reasons": ["hostname_not_covered"] if warns else []}
    for p, proto, daemon, source, warns in (
        (25, "smtp-starttls", "postfix", "binding", False), (587, "smtp-starttls", "postfix", "binding", False),
        (465, "smtps", "postfix", "binding", False), (143, "imap-starttls", "dovecot", "server-default", True),
        (993, "imaps", "haproxy", "binding", False), (110, "pop3-starttls", "dovecot", "server-default", True),
        (995, "pop3s", "haproxy", "binding", False),
    )
]


class TlsStatus(BaseModel):
    model_config = _examples({
        "domain": ex.DOMAIN, "server_id": ex.SERVER_ID, "server_hostname": ex.SERVER_HOSTNAME,
        "webmail": {"hostname": "webmail.example.com", **_SERVICE},
        "mail": {"hostname": "mail.example.com", **_SERVICE, "recommended_client_hostname": "mail.example.com",
                 "recommendation_reason": None, "ports": _PORTS, "recommended_ports": [465, 993, 995]},
        "autoconfig": {"hostname": "mail.example.com",
                       "endpoints": [{"protocol": "imap", "port": 993, "security": "tls"},
                                     {"protocol": "imap", "port": 143, "security": "starttls"}],
                       "names": ["autoconfig.example.com", "autodiscover.example.com"], "uncovered_names": [],
                       "deployed": False},
        "deployment": {"desired_generation": 42, "applied_generation": 41, "up_to_date": False},
        "warnings": [{"code": "not_yet_deployed", "message": "The server has applied generation 41 of 42: what "
                      "is bound here may not be served yet."}],
    })

    domain: str = Field(description="The domain (A-labels).", examples=[ex.DOMAIN])
    server_id: str = Field(description="The server that hosts it.", examples=[ex.SERVER_ID])
    server_hostname: str = Field(description="That server's own host name.", examples=[ex.SERVER_HOSTNAME])
    webmail: ServiceTls = Field(description="What a browser opening `webmail.<domain>` sees.")
    mail: MailTls = Field(description="What a mail client connecting to `mail.<domain>` sees, and what host "
                          "name to configure instead when that warns.")
    autoconfig: AutoconfigTls = Field(description="What mail client autoconfiguration (Thunderbird, Outlook, "
                                      "Apple) advertises for this domain (docs/autoconfig.md).")
    deployment: DeploymentState = Field(description="Whether the server applied its latest configuration.")
    warnings: list[WarningOut] = Field([], description="About the server: not yet deployed, a name it could not "
                                       "serve, Dovecot capacity, autoconfiguration names not covered.")
