"""enrolment tokens for agents, and certificate requests (a generated key and its CSR)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

``enrolment_tokens``: one-time tokens an administrator makes for a server, with which
``certpost agent enroll`` registers the agent's URL and TLS fingerprint. Only the SHA-256 of a
token's secret is stored, as for API tokens. ``certificate_requests``: a key certpost generated
(sealed with the master key like a certificate's) and its CSR, until the certificate a CA issued
for it is imported.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrolment_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_agent_url", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"], name=op.f("fk_enrolment_tokens_server_id_servers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_tokens")),
    )
    with op.batch_alter_table("enrolment_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrolment_tokens_server_id"), ["server_id"], unique=False)
    op.create_table(
        "certificate_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("key_type", sa.String(length=16), nullable=False),
        sa.Column("csr_pem", sa.Text(), nullable=False),
        sa.Column("public_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("key_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("key_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("master_key_id", sa.String(length=32), nullable=True),
        sa.Column("certificate_id", sa.String(length=36), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_certificate_requests_account_id_accounts"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name=op.f("fk_certificate_requests_certificate_id_certificates"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_requests")),
    )
    with op.batch_alter_table("certificate_requests", schema=None) as batch_op:
        batch_op.create_index("ix_certificate_requests_account_created", ["account_id", "created_at", "id"],
                              unique=False)
        batch_op.create_index("ix_certificate_requests_created", ["created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("certificate_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_certificate_requests_created")
        batch_op.drop_index("ix_certificate_requests_account_created")
    op.drop_table("certificate_requests")
    with op.batch_alter_table("enrolment_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrolment_tokens_server_id"))
    op.drop_table("enrolment_tokens")
