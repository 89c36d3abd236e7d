"""domain presented certificates: which certificate each service presents, kept on the domain

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01

A page of the TLS list (``GET /v1/domain-tls``) read each row through five index lookups: the
server (for its defaults), the two bindings, and the two presented certificates (for their
versions). On PostgreSQL that made a page three times the cost of the same page of
``GET /v1/domains`` (docs/performance.md, section 11). Each domain now keeps, beside its TLS
summary (0020), which certificate each service presents (its binding's, else the server's
default: the webmail default, else the server-wide mail certificate) and whether that service
is bound, so a page's rows are one index range of ``domains``. Backfilled here by one UPDATE;
the application keeps them afterwards (app/domains/tls_upkeep.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

COLUMNS = ("tls_webmail_certificate_id", "tls_mail_certificate_id", "tls_webmail_bound", "tls_mail_bound")


def _bound(service: str) -> str:
    return f"SELECT b.certificate_id FROM bindings b WHERE b.domain_id = domains.id AND b.service = '{service}'"


BACKFILL = sa.text(
    "UPDATE domains SET"
    f" tls_webmail_certificate_id = COALESCE(({_bound('webmail')}),"
    "   (SELECT COALESCE(s.webmail_certificate_id, s.mail_certificate_id) FROM servers s WHERE s.id = domains.server_id)),"
    f" tls_mail_certificate_id = COALESCE(({_bound('mail')}),"
    "   (SELECT s.mail_certificate_id FROM servers s WHERE s.id = domains.server_id)),"
    f" tls_webmail_bound = EXISTS ({_bound('webmail')}),"
    f" tls_mail_bound = EXISTS ({_bound('mail')})"
)


def upgrade() -> None:
    op.add_column("domains", sa.Column("tls_webmail_certificate_id", sa.String(36), nullable=True))
    op.add_column("domains", sa.Column("tls_mail_certificate_id", sa.String(36), nullable=True))
    op.add_column("domains", sa.Column("tls_webmail_bound", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("domains", sa.Column("tls_mail_bound", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.get_bind().execute(BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        for column in reversed(COLUMNS):
            batch_op.drop_column(column)
