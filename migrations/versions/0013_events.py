"""the event log: one row per state change, with the ids it is about

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

``events``: kind, time, actor (a token's id and role, or the worker's id), account, subjects and
data of every change a user or the worker makes (app/events). The integer id only grows
(SQLite ``AUTOINCREMENT``: never reused; PostgreSQL: bigserial), and ids become visible
in increasing order (app/events/recorder.py), so readers page and resume by id. Indexed for the
list's filters: (kind, id), (account_id, id), occurred_at. ``event_subjects``: every id an event
is about, so a filter by subject is one range scan on its primary key (subject_id, event_id).
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", EventId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=80), nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=True),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_kind_id", "events", ["kind", "id"])
    op.create_index("ix_events_account_id_id", "events", ["account_id", "id"])
    op.create_index("ix_events_occurred_at", "events", ["occurred_at"])
    op.create_table(
        "event_subjects",
        sa.Column("subject_id", sa.String(length=255), nullable=False),
        sa.Column("event_id", EventId, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_event_subjects_event_id_events"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subject_id", "event_id", name=op.f("pk_event_subjects")),
    )


def downgrade() -> None:
    op.drop_table("event_subjects")
    op.drop_index("ix_events_occurred_at", table_name="events")
    op.drop_index("ix_events_account_id_id", table_name="events")
    op.drop_index("ix_events_kind_id", table_name="events")
    op.drop_table("events")
