"""drift repairs back off while a server stays drifted

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01

``drift_polls.repairs``: how many repair deliveries were scheduled for drift since the server
last had no drifted port. The wait before the next one doubles with each (app/drift/rules.py
``repair_due``), so a port that a push cannot repair (a daemon whose configuration no longer
reads the agent's files) does not make the server re-deploy and reload every few minutes
forever. A plain ``ADD COLUMN`` with a server default on both databases (0 for existing rows).
"""

import warnings

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SAWarning

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("drift_polls", sa.Column("repairs", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", SAWarning)
        with op.batch_alter_table("drift_polls", schema=None) as batch_op:
            batch_op.drop_column("repairs")
