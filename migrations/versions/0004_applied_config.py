"""applied config per server

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

The document the agent last confirmed, so later pushes can send only what changed.
"""

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applied_config", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("applied_config")
