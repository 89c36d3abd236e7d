"""webhooks, their deliveries and attempts; expiry notices

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

``webhooks``: a URL subscribed to event kinds, its signing secret sealed like a DNS provider's
TSIG secret (never in the clear), its place in the event log (``after_event_id``), its failure
state, and the scheduler's lease columns. ``webhook_deliveries``: one per (webhook, event), unique,
with the exact body signed and sent; ``webhook_attempts``: every attempt. ``expiry_notices``: one
row per (certificate, not_after, threshold) already told, unique, so several workers tell once.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=True),
        sa.Column("admin_owned", sa.Boolean(), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("description", sa.String(200), nullable=True),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(32), nullable=True),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("secret_wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(32), nullable=False),
        sa.Column("after_event_id", sa.BigInteger(), nullable=False),
        sa.Column("failing_since", TZ, nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_webhooks_account_id_accounts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index(op.f("ix_webhooks_account_id"), "webhooks", ["account_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("webhook_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("event_kind", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.Column("redelivery", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"],
                                name=op.f("fk_webhook_deliveries_webhook_id_webhooks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("webhook_id", "event_id", name=op.f("uq_webhook_deliveries_webhook_id")),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["webhook_id", "status", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("redelivery", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"],
                                name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts", ["delivery_id"])
    op.create_table(
        "expiry_notices",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("not_after", TZ, nullable=False),
        sa.Column("threshold_days", sa.Integer(), nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name=op.f("fk_expiry_notices_certificate_id_certificates"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expiry_notices")),
        sa.UniqueConstraint("certificate_id", "not_after", "threshold_days",
                            name=op.f("uq_expiry_notices_certificate_id")),
    )


def downgrade() -> None:
    op.drop_table("expiry_notices")
    op.drop_index(op.f("ix_webhook_attempts_delivery_id"), table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_webhooks_account_id"), table_name="webhooks")
    op.drop_table("webhooks")
