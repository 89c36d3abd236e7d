"""a server's webmail default certificate, chosen by an administrator

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

``servers.webmail_certificate_id``: the certificate nginx presents for HTTPS without SNI, for
the server's own host name and for webmail names without a binding. NULL (every existing row):
none chosen, and the server-wide mail certificate is presented, as docs/architecture.md says.
The foreign key refuses to delete a certificate in use (RESTRICT), as for the server-wide mail
certificate.

Before this revision nginx was sent the registration certificate (``default_certificate_id``);
from now on a server without a choice is sent its server-wide mail certificate. Where the two
differ (an administrator set a mail certificate), what the server should present changed, so,
as for any such change (app/deployments/outbox.py), the server gets a new generation: its
waiting deployment is raised in place, or one is written.
"""

import uuid
import warnings
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SAWarning

REASON = "webmail default: the server-wide mail certificate (migration 0009)"

servers = sa.table(
    "servers",
    sa.column("id", sa.String), sa.column("agent_url", sa.String), sa.column("desired_generation", sa.Integer),
    sa.column("mail_certificate_id", sa.String), sa.column("default_certificate_id", sa.String),
)
deployments = sa.table(
    "deployments",
    sa.column("id", sa.String), sa.column("server_id", sa.String), sa.column("generation", sa.Integer),
    sa.column("reason", sa.String), sa.column("status", sa.String), sa.column("attempts", sa.Integer),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)), sa.column("changes", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)), sa.column("updated_at", sa.DateTime(timezone=True)),
)

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with warnings.catch_warnings():
        # SQLite's batch mode rebuilds servers and reflects certificates, the target of its foreign
        # keys; SQLAlchemy warns it cannot reflect 0009's expression index there. Only servers is
        # rebuilt, so the index stays; the warning would print on every `certpost migrate`.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", SAWarning)
        with op.batch_alter_table("servers", schema=None) as batch_op:
            batch_op.add_column(sa.Column("webmail_certificate_id", sa.String(length=36), nullable=True))
            batch_op.create_foreign_key(
                "fk_servers_webmail_certificate_id_certificates", "certificates",
                ["webmail_certificate_id"], ["id"], ondelete="RESTRICT",
            )
            batch_op.create_index("ix_servers_webmail_certificate_id", ["webmail_certificate_id"], unique=False)
    _redeploy_changed_defaults()


def _redeploy_changed_defaults() -> None:
    """A new generation for each server whose webmail default is now another certificate."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    changed = bind.execute(
        sa.select(servers.c.id, servers.c.agent_url, servers.c.desired_generation)
        .where(servers.c.mail_certificate_id != servers.c.default_certificate_id)
    ).all()
    for server_id, agent_url, generation in changed:
        generation += 1
        due = now if agent_url else None
        bind.execute(sa.update(servers).where(servers.c.id == server_id).values(desired_generation=generation))
        moved = bind.execute(
            sa.update(deployments)
            .where(deployments.c.server_id == server_id, deployments.c.status.in_(("pending", "retrying")))
            .values(generation=generation, reason=REASON, status="pending", next_attempt_at=due, attempts=0,
                    changes=deployments.c.changes + 1, updated_at=now)
        )
        if not moved.rowcount:
            bind.execute(sa.insert(deployments).values(
                id=str(uuid.uuid4()), server_id=server_id, generation=generation, reason=REASON, status="pending",
                attempts=0, next_attempt_at=due, changes=1, created_at=now, updated_at=now,
            ))


def downgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_index("ix_servers_webmail_certificate_id")
        batch_op.drop_constraint("fk_servers_webmail_certificate_id_certificates", type_="foreignkey")
        batch_op.drop_column("webmail_certificate_id")
