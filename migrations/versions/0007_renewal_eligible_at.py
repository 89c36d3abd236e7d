"""the renewal scan as one index range scan

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

``renewal_eligible_at`` is when an ACME certificate next becomes due (its renewal time, or a
failed renewal's next attempt if later; NULL while renewing or when never), stored and indexed
so the worker's "due now" is ``renewal_eligible_at <= now`` whatever the distribution
(``app.kit.renewal``). It replaces the index on ``renewal_at``, which no query uses any more.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# app.kit.renewal.renewal_eligible_at, in portable SQL (no GREATEST/max: their NULL rules differ).
BACKFILL = """
UPDATE certificates SET renewal_eligible_at = CASE
    WHEN source = 'acme' AND renewal_at IS NOT NULL
         AND (renewal_status IS NULL OR renewal_status <> 'renewing')
    THEN CASE WHEN next_renewal_attempt_at IS NOT NULL AND next_renewal_attempt_at > renewal_at
              THEN next_renewal_attempt_at ELSE renewal_at END
END
WHERE source = 'acme' AND renewal_at IS NOT NULL
"""


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renewal_eligible_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index(batch_op.f("ix_certificates_renewal_at"))
    op.execute(BACKFILL)
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certificates_renewal_eligible_at"), ["renewal_eligible_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_renewal_eligible_at"))
        batch_op.create_index(batch_op.f("ix_certificates_renewal_at"), ["renewal_at"], unique=False)
        batch_op.drop_column("renewal_eligible_at")
