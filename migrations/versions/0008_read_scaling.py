"""per-server mail certificate count; domain indexes in page order

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

The Dovecot capacity warning read COUNT(DISTINCT certificate_id) over every mail binding of
the server on each TLS status; the count is now kept on the server row (DomainService keeps it
on every mail bind, rebind, unbind and domain delete) and backfilled here with that query.
Domains are listed by name within a server or an account: (server_id, name) and
(account_id, name) read one page without sorting every domain of the server.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mail_certificate_count", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE servers SET mail_certificate_count = ("
        " SELECT COUNT(DISTINCT bindings.certificate_id) FROM bindings"
        " JOIN domains ON domains.id = bindings.domain_id"
        " WHERE domains.server_id = servers.id AND bindings.service = 'mail')"
    )
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_index("ix_domains_server_id")
        batch_op.drop_index("ix_domains_account_id")
        batch_op.create_index("ix_domains_server_id_name", ["server_id", "name"], unique=False)
        batch_op.create_index("ix_domains_account_id_name", ["account_id", "name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_index("ix_domains_account_id_name")
        batch_op.drop_index("ix_domains_server_id_name")
        batch_op.create_index("ix_domains_account_id", ["account_id"], unique=False)
        batch_op.create_index("ix_domains_server_id", ["server_id"], unique=False)
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("mail_certificate_count")
