"""Every table, imported in one place for Alembic and for relationship resolution."""

from app.accounts.models import Account, ApiToken
from app.acme.models import AcmeAccount, CertificateOrder, DnsProvider
from app.certificate_requests.models import CertificateRequest
from app.certificates.models import Certificate, CertificateName
from app.db import Base
from app.deployments.models import Deployment, DeploymentAttempt
from app.domains.models import Binding, Domain
from app.drift.models import DriftPoll, ServedObservation
from app.enrolment.models import EnrolmentToken
from app.events.models import Event, EventSubject
from app.expiry.models import ExpiryNotice
from app.idempotency.models import IdempotencyKey
from app.retention.models import ScheduledTask
from app.servers.models import Server
from app.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

__all__ = [
    "Account",
    "AcmeAccount",
    "ApiToken",
    "Base",
    "Binding",
    "Certificate",
    "CertificateName",
    "CertificateOrder",
    "CertificateRequest",
    "Deployment",
    "DeploymentAttempt",
    "DnsProvider",
    "Domain",
    "DriftPoll",
    "EnrolmentToken",
    "Event",
    "EventSubject",
    "ExpiryNotice",
    "IdempotencyKey",
    "ScheduledTask",
    "ServedObservation",
    "Server",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
]
