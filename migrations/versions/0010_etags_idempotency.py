"""row versions for entity tags; stored responses of Idempotency-Key requests

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

``version`` on certificates, servers and bindings: a counter every UPDATE of the row raises
(app/versioning.py), from which the API's ETag is made and against which If-Match is checked
(RFC 9110 sections 8.8.3 and 13.1.1). Existing rows start at 1.

``idempotency_keys``: one row per (caller scope, Idempotency-Key) for 24 hours
(draft-ietf-httpapi-idempotency-key-header): the request's fingerprint, whether it is still
in flight (with a lease, so a crashed request does not hold the key for a day), and the first
response (status, headers, and the body sealed with the master key, never in the clear).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

VERSIONED = ("certificates", "servers", "bindings")


def upgrade() -> None:
    for table in VERSIONED:
        # A plain ADD COLUMN (SQLite takes a NOT NULL column with a constant default): batch mode
        # would reflect the table first, and SQLAlchemy warns on every migrate that it cannot
        # reflect 0009's expression index on certificates (tests/test_cli.py wants one quiet line)
        op.add_column(table, sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=36), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("body_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("master_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_idempotency_keys_scope")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_expires_at"))
    op.drop_table("idempotency_keys")
    for table in reversed(VERSIONED):
        if table == "certificates":
            # SQLite's batch mode rebuilds the table and cannot carry 0009's expression index over
            # (Alembic skips reflecting it): take it off first and put it back after.
            op.drop_index("uq_certificates_owner_fingerprint", table_name="certificates")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("version")
        if table == "certificates":
            op.create_index("uq_certificates_owner_fingerprint", "certificates",
                            [sa.text("coalesce(account_id, '')"), "fingerprint_sha256"], unique=True)
