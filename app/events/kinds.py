"""Every kind of event, in one place, with the data each one carries and an example of it.

A kind is a dotted name, ``<subject>.<what happened>``, stable once released: consumers
(webhook subscriptions, panels) filter on it. Adding a kind is adding a member here, its
description and its example in ``KINDS``; nothing else needs to know the list. The examples feed
the OpenAPI document (``GET /v1/events``) and tests/events check every kind has one.

``data`` holds what a consumer needs to act without another request: names, fingerprints,
generations, error codes. Never key material: ``app.events.recorder.record`` refuses a payload
that looks like PEM or a private key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app import examples as ex


class EventKind(StrEnum):
    CERTIFICATE_UPLOADED = "certificate.uploaded"
    CERTIFICATE_REPLACED = "certificate.replaced"
    CERTIFICATE_DELETED = "certificate.deleted"
    CERTIFICATE_EXPIRING = "certificate.expiring"
    CERTIFICATE_EXPIRED = "certificate.expired"
    ORDER_VALID = "order.valid"
    ORDER_INVALID = "order.invalid"
    RENEWAL_SCHEDULED = "renewal.scheduled"
    RENEWAL_FAILED = "renewal.failed"
    RENEWAL_SUCCEEDED = "renewal.succeeded"
    BINDING_SET = "binding.set"
    BINDING_REMOVED = "binding.removed"
    SERVER_MAIL_CERTIFICATE_CHANGED = "server.mail_certificate_changed"
    SERVER_WEBMAIL_CERTIFICATE_CHANGED = "server.webmail_certificate_changed"
    DEPLOYMENT_APPLIED = "deployment.applied"
    DEPLOYMENT_FAILED = "deployment.failed"
    DEPLOYMENT_SUPERSEDED = "deployment.superseded"
    DRIFT_DETECTED = "drift.detected"
    DRIFT_RESOLVED = "drift.resolved"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    WEBHOOK_DISABLED = "webhook.disabled"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_CHANGED = "webhook.changed"
    WEBHOOK_DELETED = "webhook.deleted"
    ENROLMENT_TOKEN_CREATED = "enrolment_token.created"
    ENROLMENT_TOKEN_DELETED = "enrolment_token.deleted"
    AGENT_ENROLLED = "agent.enrolled"
    CERTIFICATE_REQUEST_CREATED = "certificate_request.created"
    CERTIFICATE_REQUEST_COMPLETED = "certificate_request.completed"
    CERTIFICATE_REQUEST_DELETED = "certificate_request.deleted"
    DNS_PROVIDER_CREATED = "dns_provider.created"
    DNS_PROVIDER_DELETED = "dns_provider.deleted"


@dataclass(frozen=True)
class KindInfo:
    description: str
    subjects: dict[str, str]  # example subjects: role -> id
    data: dict[str, Any]  # example data


_CERT = {"certificate": ex.CERTIFICATE_ID}
_FP = ex.FINGERPRINT
_OLD_FP = "4b3f0d0e6c1d9a8b7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
_NAMES = ["example.com", "*.example.com"]
_ORDER = {"order": ex.ORDER_ID, "certificate": ex.CERTIFICATE_ID}
_DEPLOY = {"deployment": ex.DEPLOYMENT_ID, "server": ex.SERVER_ID}
_HOOK = {"webhook": ex.TOKEN_ID}
_HOOK_URL = "https://panel.example.com/hooks/certpost"
_ENROL = {"enrolment_token": ex.TOKEN_ID, "server": ex.SERVER_ID}
_CSR = {"certificate_request": ex.CERTIFICATE_ID}
_DNS = {"dns_provider": ex.TOKEN_ID}

KINDS: dict[EventKind, KindInfo] = {
    EventKind.CERTIFICATE_UPLOADED: KindInfo(
        "A certificate was stored: uploaded, imported, made self-signed, or issued by a new ACME order.",
        _CERT, {"fingerprint_sha256": _FP, "names": _NAMES, "not_after": ex.NOT_AFTER, "source": "upload",
                "revision": 1}),
    EventKind.CERTIFICATE_REPLACED: KindInfo(
        "A certificate's material was replaced (a new upload or a renewal); its bindings keep it.",
        _CERT, {"fingerprint_sha256": _FP, "previous_fingerprint_sha256": _OLD_FP, "names": _NAMES,
                "not_after": ex.NOT_AFTER, "revision": 2}),
    EventKind.CERTIFICATE_DELETED: KindInfo(
        "A certificate was deleted.", _CERT, {"fingerprint_sha256": _FP, "names": _NAMES}),
    EventKind.CERTIFICATE_EXPIRING: KindInfo(
        "A bound certificate that will not be renewed in time crossed a threshold before `not_after` "
        "(30, 14, 7, 1 days).", _CERT,
        {"fingerprint_sha256": _FP, "names": _NAMES, "not_after": ex.NOT_AFTER, "days_left": 14, "threshold_days": 14}),
    EventKind.CERTIFICATE_EXPIRED: KindInfo(
        "A bound certificate passed its `not_after`.", _CERT,
        {"fingerprint_sha256": _FP, "names": _NAMES, "not_after": ex.NOT_AFTER}),
    EventKind.ORDER_VALID: KindInfo(
        "An ACME order was issued and stored.", _ORDER,
        {"names": _NAMES, "purpose": "new", "fingerprint_sha256": _FP, "not_after": ex.NOT_AFTER}),
    EventKind.ORDER_INVALID: KindInfo(
        "An ACME order failed; `condition` says at which step and why.", {"order": ex.ORDER_ID},
        {"names": _NAMES, "purpose": "new",
         "condition": {"code": "dns_update_failed", "message": "the DNS server refused the update",
                       "step": "dns_update", "at": ex.CREATED}}),
    EventKind.RENEWAL_SCHEDULED: KindInfo(
        "The worker started a renewal order for a due ACME certificate.", _ORDER,
        {"names": _NAMES, "renewal_at": ex.CREATED}),
    EventKind.RENEWAL_FAILED: KindInfo(
        "A renewal could not be ordered or its order failed; it is retried at `next_attempt_at`.", _CERT,
        {"attempts": 2, "next_attempt_at": ex.CREATED,
         "condition": {"code": "dns_update_failed", "message": "the DNS server refused the update",
                       "step": "dns_update", "at": ex.CREATED}}),
    EventKind.RENEWAL_SUCCEEDED: KindInfo(
        "A renewal order replaced the certificate's material.", _ORDER,
        {"fingerprint_sha256": _FP, "previous_fingerprint_sha256": _OLD_FP, "not_after": ex.NOT_AFTER}),
    EventKind.BINDING_SET: KindInfo(
        "A domain's webmail or mail was bound to a certificate (created or changed).",
        {"domain": "example.com", "server": ex.SERVER_ID, "certificate": ex.CERTIFICATE_ID},
        {"service": "mail", "host_name": "mail.example.com", "fingerprint_sha256": _FP,
         "previous_certificate_id": None, "warnings": []}),
    EventKind.BINDING_REMOVED: KindInfo(
        "A binding was removed (`reason`: `unbound`, or `domain_deleted` when its domain was); the server's "
        "default is served again for that name.",
        {"domain": "example.com", "server": ex.SERVER_ID, "certificate": ex.CERTIFICATE_ID},
        {"service": "mail", "host_name": "mail.example.com", "reason": "unbound"}),
    EventKind.SERVER_MAIL_CERTIFICATE_CHANGED: KindInfo(
        "An administrator chose a server's server-wide mail certificate.",
        {"server": ex.SERVER_ID, "certificate": ex.CERTIFICATE_ID},
        {"hostname": ex.SERVER_HOSTNAME, "fingerprint_sha256": _FP, "previous_certificate_id": None}),
    EventKind.SERVER_WEBMAIL_CERTIFICATE_CHANGED: KindInfo(
        "An administrator chose or unset a server's webmail default (null: the server-wide mail certificate).",
        {"server": ex.SERVER_ID, "certificate": ex.CERTIFICATE_ID},
        {"hostname": ex.SERVER_HOSTNAME, "certificate_id": ex.CERTIFICATE_ID, "fingerprint_sha256": _FP,
         "previous_certificate_id": None}),
    EventKind.DEPLOYMENT_APPLIED: KindInfo(
        "A server's agent applied a generation (`failed_names`: names held back, the rest served).", _DEPLOY,
        {"generation": 7, "failed_names": []}),
    EventKind.DEPLOYMENT_FAILED: KindInfo(
        "A server's agent refused or rolled back a generation; it keeps serving the previous one.", _DEPLOY,
        {"generation": 7, "condition": {"code": "validate_failed", "message": "postfix check failed",
                                        "step": "validate", "at": ex.CREATED}}),
    EventKind.DEPLOYMENT_SUPERSEDED: KindInfo(
        "A delivered generation was overtaken by a newer change before the agent held it; the newer one follows.",
        _DEPLOY, {"generation": 7, "superseded_by": 8}),
    EventKind.DRIFT_DETECTED: KindInfo(
        "An agent observed a port serving something other than what it last applied.",
        {"server": ex.SERVER_ID, "domain": "example.com"},
        {"host_name": "mail.example.com", "port": 993, "expected_fingerprint_sha256": _FP,
         "observed_fingerprint_sha256": _OLD_FP}),
    EventKind.DRIFT_RESOLVED: KindInfo(
        "A port that had drifted serves what its agent last applied again (repaired by a delivery, or by hand).",
        {"server": ex.SERVER_ID, "domain": "example.com"},
        {"host_name": "mail.example.com", "port": 993, "expected_fingerprint_sha256": _FP,
         "observed_fingerprint_sha256": _FP}),
    EventKind.TOKEN_CREATED: KindInfo(
        "An API token was created (never its secret).", {"token": ex.TOKEN_ID},
        {"role": "customer", "description": "control panel"}),
    EventKind.TOKEN_REVOKED: KindInfo(
        "An API token was revoked.", {"token": ex.TOKEN_ID}, {"role": "customer"}),
    EventKind.WEBHOOK_DISABLED: KindInfo(
        "A webhook was disabled by the worker: `reason` `failing` (every attempt failed for "
        "`CERTPOST_WEBHOOK_DISABLE_AFTER_SECONDS`) or `gone` (the receiver answered 410); `url` without its "
        "query (where receivers keep keys).", {"webhook": ex.TOKEN_ID},
        {"url": "https://panel.example.com/hooks/certpost", "reason": "failing", "consecutive_failures": 8,
         "failing_since": ex.CREATED, "disabled_at": ex.CREATED}),
    EventKind.WEBHOOK_CREATED: KindInfo(
        "A webhook was created (never its secret; `url` without any user information or query, which may "
        "carry credentials). An administrator's webhook is a platform event, whichever account it follows.",
        _HOOK, {"url": _HOOK_URL, "kinds": ["certificate.expiring"], "description": "panel"}),
    EventKind.WEBHOOK_CHANGED: KindInfo(
        "A webhook was changed through the API (`changed`: the fields that changed; `enabled` is its state now).",
        _HOOK, {"url": _HOOK_URL, "changed": ["enabled"], "enabled": True, "kinds": ["certificate.expiring"]}),
    EventKind.WEBHOOK_DELETED: KindInfo("A webhook was deleted.", _HOOK, {"url": _HOOK_URL}),
    EventKind.ENROLMENT_TOKEN_CREATED: KindInfo(
        "An administrator made an enrolment token for a server (never the token itself).", _ENROL,
        {"description": "mx1 install", "expires_at": ex.CREATED}),
    EventKind.ENROLMENT_TOKEN_DELETED: KindInfo(
        "An administrator withdrew an enrolment token (`used`: whether it had been used).", _ENROL,
        {"used": False}),
    EventKind.AGENT_ENROLLED: KindInfo(
        "An agent spent an enrolment token and became the server's agent; the actor is that enrolment token "
        "(`{type: enrolment, id: <enrolment token id>}`).", _ENROL,
        {"agent_url": "https://mx1.example.com:8750", "agent_tls_fingerprint": _FP,
         "previous_agent_url": None}),
    EventKind.CERTIFICATE_REQUEST_CREATED: KindInfo(
        "A key and CSR were made for a certificate request (never the key; `public_key_sha256` is the SPKI "
        "hash the issued certificate must match).", _CSR,
        {"names": _NAMES, "key_type": "ecdsa-p256", "public_key_sha256": _OLD_FP}),
    EventKind.CERTIFICATE_REQUEST_COMPLETED: KindInfo(
        "The certificate a CA issued for a request was imported; a `certificate.uploaded` event for it "
        "comes in the same transaction.", {**_CSR, "certificate": ex.CERTIFICATE_ID},
        {"names": _NAMES, "fingerprint_sha256": _FP}),
    EventKind.CERTIFICATE_REQUEST_DELETED: KindInfo(
        "A certificate request and its key were deleted (a completed one's certificate stays).", _CSR,
        {"names": _NAMES, "status": "pending"}),
    EventKind.DNS_PROVIDER_CREATED: KindInfo(
        "A DNS provider was stored (its name and kind; never its settings' secrets).", _DNS,
        {"name": "bind primary", "kind": "rfc2136"}),
    EventKind.DNS_PROVIDER_DELETED: KindInfo("A DNS provider was deleted.", _DNS,
                                             {"name": "bind primary", "kind": "rfc2136"}),
}
