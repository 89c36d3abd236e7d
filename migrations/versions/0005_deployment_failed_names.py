"""per-name failures of an applied deployment

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

The agent applies a change with one tenant's unusable certificate held back (its names keep
what they served before) and reports those names; the deployment keeps the report, so the
domain's TLS status can name the failure (docs/architecture.md, "Blast radius of one").
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_names", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("failed_names")
