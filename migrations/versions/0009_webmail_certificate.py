"""a server's webmail default certificate, chosen by an administrator

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

``servers.webmail_certificate_id``: the certificate nginx presents for HTTPS without SNI, for
the server's own host name and for webmail names without a binding. NULL (every existing row):
none chosen, and the server-wide mail certificate is presented, as docs/architecture.md says.
The foreign key refuses to delete a certificate in use (RESTRICT), as for the server-wide mail
certificate.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webmail_certificate_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            "fk_servers_webmail_certificate_id_certificates", "certificates",
            ["webmail_certificate_id"], ["id"], ondelete="RESTRICT",
        )
        batch_op.create_index("ix_servers_webmail_certificate_id", ["webmail_certificate_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_index("ix_servers_webmail_certificate_id")
        batch_op.drop_constraint("fk_servers_webmail_certificate_id_certificates", type_="foreignkey")
        batch_op.drop_column("webmail_certificate_id")
