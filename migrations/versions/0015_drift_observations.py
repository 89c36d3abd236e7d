"""drift observations: what each agent saw its ports serve, and the worker's polls of them

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

``drift_polls``: one row per server with an agent, written by the worker's first poll (when the
next poll is due, the agent epoch and sequence number read so far, the drifted count, the last
repair). ``served_observations``: the latest probe per (server, name, service, daemon, port);
``hostname`` "" is the no-SNI probe. Both new: nothing to backfill (the first poll fills them).
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "drift_polls",
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("next_at", _AT, nullable=False),
        sa.Column("polled_at", _AT, nullable=True),
        sa.Column("epoch", sa.String(length=32), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("drifted", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("repair_at", _AT, nullable=True),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"], name=op.f("fk_drift_polls_server_id_servers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("server_id", name=op.f("pk_drift_polls")),
    )
    op.create_index(op.f("ix_drift_polls_next_at"), "drift_polls", ["next_at"], unique=False)
    op.create_table(
        "served_observations",
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("service", sa.String(length=16), nullable=False),
        sa.Column("daemon", sa.String(length=16), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("expected", sa.String(length=64), nullable=False),
        sa.Column("served", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("observed_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"], name=op.f("fk_served_observations_server_id_servers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("server_id", "hostname", "service", "daemon", "port",
                                name=op.f("pk_served_observations")),
    )
    op.create_index("ix_served_observations_drift", "served_observations", ["server_id", "drifted"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_served_observations_drift", table_name="served_observations")
    op.drop_table("served_observations")
    op.drop_index(op.f("ix_drift_polls_next_at"), table_name="drift_polls")
    op.drop_table("drift_polls")
