"""a server's TLS front for the implicit-TLS mail ports

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01

``servers.tls_front``: NULL (every existing row) when the mail daemons terminate TLS
themselves; ``haproxy`` when an HAProxy front serves IMAPS and POP3S by SNI in front of Dovecot
(the agent's ``[haproxy]`` section, docs/agent.md). Set by an administrator, like ``software``:
the binding rules, the TLS status and the Dovecot capacity warning depend on it before any
agent has answered. Nothing served changes, so no server gets a new generation.

A plain ``ADD COLUMN`` on both databases: SQLite adds a nullable column without rebuilding the
table, so no expression index is at risk.
"""

import warnings

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SAWarning

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("servers", sa.Column("tls_front", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with warnings.catch_warnings():
        # As in 0011: SQLite's batch mode reflects certificates, whose expression index it skips.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", SAWarning)
        with op.batch_alter_table("servers", schema=None) as batch_op:
            batch_op.drop_column("tls_front")
