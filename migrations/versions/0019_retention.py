"""retention: the scheduled_tasks lease row and indexes for pruning

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01

``scheduled_tasks`` holds one row per singleton task of the worker (``retention``): its lease,
when it is due again and what it pruned (app/retention). Two indexes serve the pruning
batches: ``event_subjects (event_id)`` (the primary key starts with subject_id, so deleting a
batch of events' subject rows would otherwise scan the table) and ``webhook_deliveries
(status, updated_at)`` (finished deliveries by age). Events are found through the existing
``ix_events_occurred_at``, deployments through the unique (server_id, generation).
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_tasks",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_pruned", sa.JSON(), nullable=True),
        sa.Column("pruned_total", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_scheduled_tasks"),
    )
    op.create_index("ix_event_subjects_event_id", "event_subjects", ["event_id"])
    op.create_index("ix_webhook_deliveries_status_updated_at", "webhook_deliveries", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status_updated_at", table_name="webhook_deliveries")
    op.drop_index("ix_event_subjects_event_id", table_name="event_subjects")
    op.drop_table("scheduled_tasks")
