"""deployment lease per server

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

One worker at a time delivers to a server: the worker that holds the lease on the server row.
"""

from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deploy_lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deploy_lease_owner", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("deploy_lease_owner")
        batch_op.drop_column("deploy_lease_until")
