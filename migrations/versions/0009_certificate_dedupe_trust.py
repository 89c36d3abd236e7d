"""one certificate per owner and fingerprint; the stored chain verdict says why and against what

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

An identical upload now returns the certificate that exists (app.certificates.service), and a
unique index on (COALESCE(account_id, ''), fingerprint_sha256) keeps concurrent identical
uploads from making two rows. Rows that already repeat a fingerprint for one owner are merged
first: the kept row is the ACME one if any (it carries the renewal state), else the trusted one
with the longest chain, else the oldest; every binding, server-wide / default assignment and
ACME order pointing at a dropped copy is moved to it, so no binding is lost. The copies hold the
same certificate and therefore the same key; only the stored chain can differ.

``trust_reason``, ``trust_detail`` and ``trust_store`` (the identity of the roots the verdict
was judged against) are added empty: the service judges every row whose ``trust_store`` is not
its own at start-up (app.certificates.trust.refresh_stored).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

REFERENCES = (
    ("bindings", "certificate_id"),
    ("servers", "mail_certificate_id"),
    ("servers", "default_certificate_id"),
    ("certificate_orders", "certificate_id"),
    ("certificate_orders", "result_certificate_id"),
)

# As in 0008: distinct certificates bound as mail per server, which a merge can lower.
MAIL_COUNT = (
    "UPDATE servers SET mail_certificate_count = ("
    " SELECT COUNT(DISTINCT bindings.certificate_id) FROM bindings"
    " JOIN domains ON domains.id = bindings.domain_id"
    " WHERE domains.server_id = servers.id AND bindings.service = 'mail')"
)


def merge_duplicates(conn) -> int:
    """Merge each owner's copies of one fingerprint into one row; returns the rows dropped."""
    groups = conn.execute(sa.text(
        "SELECT COALESCE(account_id, '') AS owner, fingerprint_sha256 FROM certificates"
        " GROUP BY COALESCE(account_id, ''), fingerprint_sha256 HAVING COUNT(*) > 1"
    )).all()
    dropped = 0
    for owner, fingerprint in groups:
        rows = conn.execute(sa.text(
            "SELECT id FROM certificates WHERE COALESCE(account_id, '') = :owner AND fingerprint_sha256 = :fp"
            " ORDER BY CASE WHEN source = 'acme' THEN 0 ELSE 1 END, CASE WHEN trusted THEN 0 ELSE 1 END,"
            " chain_length DESC, created_at, id"
        ), {"owner": owner, "fp": fingerprint}).scalars().all()
        keep, copies = rows[0], rows[1:]
        for copy in copies:
            for table, column in REFERENCES:
                conn.execute(sa.text(f"UPDATE {table} SET {column} = :keep WHERE {column} = :copy"),
                             {"keep": keep, "copy": copy})
            conn.execute(sa.text("DELETE FROM certificate_names WHERE certificate_id = :copy"), {"copy": copy})
            conn.execute(sa.text("DELETE FROM certificates WHERE id = :copy"), {"copy": copy})
            dropped += 1
    if dropped:
        conn.execute(sa.text(MAIL_COUNT))
    return dropped


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trust_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("trust_detail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("trust_store", sa.String(length=64), nullable=True))
    merge_duplicates(op.get_bind())
    op.create_index(
        "uq_certificates_owner_fingerprint",
        "certificates",
        [sa.text("coalesce(account_id, '')"), "fingerprint_sha256"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_certificates_owner_fingerprint", table_name="certificates")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_column("trust_store")
        batch_op.drop_column("trust_detail")
        batch_op.drop_column("trust_reason")
