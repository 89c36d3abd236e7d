"""The problems webhook routes answer (app/problems.py turns them into problem+json)."""

from __future__ import annotations

from app.problems import Conflict, RuleViolation


class InvalidWebhookUrl(RuleViolation):
    """The URL is not an absolute `http(s)` URL without user info or fragment (a customer's must be `https`)."""

    code, title = "invalid_webhook_url", "The webhook URL is not valid"


class WebhookTargetNotAllowed(RuleViolation):
    """A customer's webhook must reach public unicast addresses on port 443 (every A/AAAA answer):
    loopback, private, link-local and other special-purpose addresses are refused."""

    code, title = "webhook_target_not_allowed", "The webhook URL does not lead to a public address on port 443"


class UnknownEventKind(RuleViolation):
    """A kind in `kinds` is not an event kind certpost records (`kind` says which)."""

    code, title = "unknown_event_kind", "No such event kind"
    extensions = ("kind",)


class WebhookDisabled(Conflict):
    """The webhook is disabled: enable it (`PATCH` with `enabled: true`) before asking for a redelivery."""

    code, title = "webhook_disabled", "The webhook is disabled"
