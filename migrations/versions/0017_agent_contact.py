"""when each server's agent last answered the controller

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

``servers.agent_contact_at``: the last time the agent answered a request over its pinned TLS
(an applied or refused configuration, a stale-generation reply; not a timeout, a refused
connection or a wrong certificate). The controller's ``/metrics`` exports it per server
(``certpost_agent_last_contact_timestamp_seconds``) and the "agent silent" alert reads it
(deploy/prometheus/certpost-rules.yml). NULL (every existing row): not known yet.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_contact_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("agent_contact_at")
