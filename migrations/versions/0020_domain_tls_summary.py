"""domain TLS summary: what each domain presents, kept for the TLS list's sort and filters

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01

The TLS list sorted by expiry and filtered by warning by reading every domain's two presented
certificates (docs/performance.md, section 11). Each domain now keeps the earlier notAfter
(``tls_soonest``) and the later notBefore (``tls_latest_start``) of the certificates it
presents (its binding's, else the server's default: the webmail default, else the server-wide
mail certificate), and as bits the reasons to warn that do not depend on the moment
(``tls_flags``: 1 the name is not covered, 2 self-signed, 4 untrusted; app/domains/tls_summary.py).
Backfilled here from the certificates, with coverage decided on ``certificate_names`` as the
TLS list's SQL did (the name itself, or the wildcard one label up); the application keeps them
afterwards (app/domains/tls_upkeep.py). Indexes lead with the server or the account, and one of
each without, for the expiry order and for the few domains with something to warn about.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_domains_server_id_tls_soonest": ["server_id", "tls_soonest", "name"],
    "ix_domains_account_id_tls_soonest": ["account_id", "tls_soonest", "name"],
    "ix_domains_tls_soonest": ["tls_soonest", "name"],
    "ix_domains_server_id_tls_flags": ["server_id", "tls_flags", "name"],
    "ix_domains_account_id_tls_flags": ["account_id", "tls_flags", "name"],
    "ix_domains_tls_flags": ["tls_flags", "name"],
    "ix_domains_server_id_tls_latest_start": ["server_id", "tls_latest_start"],
    "ix_domains_account_id_tls_latest_start": ["account_id", "tls_latest_start"],
    "ix_domains_tls_latest_start": ["tls_latest_start"],
}

BATCH = 1000

# Per domain, the facts of the two presented certificates and whether each covers its name.
PRESENTED = sa.text(
    "SELECT d.id, wc.not_after, mc.not_after, wc.not_before, mc.not_before,"
    " wc.self_signed, wc.trusted, mc.self_signed, mc.trusted,"
    " EXISTS (SELECT 1 FROM certificate_names n WHERE n.certificate_id = wc.id"
    "         AND n.name IN ('webmail.' || d.name, '*.' || d.name)),"
    " EXISTS (SELECT 1 FROM certificate_names n WHERE n.certificate_id = mc.id"
    "         AND n.name IN ('mail.' || d.name, '*.' || d.name))"
    " FROM domains d"
    " JOIN servers s ON s.id = d.server_id"
    " LEFT JOIN bindings wb ON wb.domain_id = d.id AND wb.service = 'webmail'"
    " LEFT JOIN bindings mb ON mb.domain_id = d.id AND mb.service = 'mail'"
    " JOIN certificates wc ON wc.id = COALESCE(wb.certificate_id, s.webmail_certificate_id, s.mail_certificate_id)"
    " JOIN certificates mc ON mc.id = COALESCE(mb.certificate_id, s.mail_certificate_id)"
    " WHERE d.id > :after ORDER BY d.id LIMIT :batch"
)


def _flags(w_self, w_trusted, m_self, m_trusted, w_covered, m_covered) -> int:
    """``rules.identity_reasons`` of both services as bits (self-signed, else untrusted)."""
    flags = 0
    if not (w_covered and m_covered):
        flags |= 1
    if w_self or m_self:
        flags |= 2
    if (not w_self and not w_trusted) or (not m_self and not m_trusted):
        flags |= 4
    return flags


def upgrade() -> None:
    op.add_column("domains", sa.Column("tls_soonest", sa.DateTime(timezone=True), nullable=True))
    op.add_column("domains", sa.Column("tls_latest_start", sa.DateTime(timezone=True), nullable=True))
    op.add_column("domains", sa.Column("tls_flags", sa.Integer(), server_default="0", nullable=False))
    bind = op.get_bind()
    write = sa.text("UPDATE domains SET tls_soonest = :soonest, tls_latest_start = :start, tls_flags = :flags"
                    " WHERE id = :id")
    after = ""
    while True:
        rows = bind.execute(PRESENTED, {"after": after, "batch": BATCH}).all()
        if not rows:
            break
        bind.execute(write, [
            {"id": r[0], "soonest": min(r[1], r[2]), "start": max(r[3], r[4]), "flags": _flags(*r[5:11])}
            for r in rows
        ])
        after = rows[-1][0]
    for name, columns in INDEXES.items():
        op.create_index(name, "domains", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="domains")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_column("tls_flags")
        batch_op.drop_column("tls_latest_start")
        batch_op.drop_column("tls_soonest")
