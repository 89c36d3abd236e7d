"""applied names, pending names, one waiting deployment per server

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

The applied document moves from one JSON column per server (parsed and rewritten whole on
every delivery) to one row per host name plus its digest and scalars; the names a change
touched are marked so that a delta is computed from them alone. A server keeps at most one
undelivered deployment (a partial unique index); servers without an agent have no due time.
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DUE = sa.text("status IN ('pending', 'retrying')")
SCHEDULED = sa.text("status IN ('pending', 'retrying') AND next_attempt_at IS NOT NULL")


def _digest(document: dict) -> str:
    """app.kit.digest.config_digest, frozen here as it was when this revision was written."""
    content = {k: v for k, v in document.items() if k not in ("generation", "bundles")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def upgrade() -> None:
    op.create_table(
        "applied_names",
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("service", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"], name=op.f("fk_applied_names_server_id_servers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("server_id", "hostname", name=op.f("pk_applied_names")),
    )
    op.create_index("ix_applied_names_server_fingerprint", "applied_names", ["server_id", "fingerprint"])
    op.create_table(
        "pending_names",
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"], name=op.f("fk_pending_names_server_id_servers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("server_id", "hostname", name=op.f("pk_pending_names")),
    )
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applied_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("applied_head", sa.JSON(), nullable=True))

    conn = op.get_bind()
    servers = sa.table("servers", sa.column("id", sa.String), sa.column("applied_config", sa.JSON),
                       sa.column("applied_digest", sa.String), sa.column("applied_head", sa.JSON),
                       sa.column("agent_url", sa.String))
    names = sa.table("applied_names", sa.column("server_id", sa.String), sa.column("hostname", sa.String),
                     sa.column("service", sa.String), sa.column("fingerprint", sa.String))
    for server_id, document in conn.execute(sa.select(servers.c.id, servers.c.applied_config)).all():
        if not document:
            continue
        head = {k: document.get(k) for k in ("server_hostname", "server_certificate", "webmail_default")}
        conn.execute(servers.update().where(servers.c.id == server_id)
                     .values(applied_digest=_digest(document), applied_head=head))
        rows = [{"server_id": server_id, "hostname": name, "service": service, "fingerprint": fp}
                for service in ("mail", "webmail") for name, fp in (document.get(service) or {}).items()]
        for start in range(0, len(rows), 2000):
            conn.execute(names.insert(), rows[start:start + 2000])
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("applied_config")

    # One waiting deployment per server: the newest; older waiting ones were superseded anyway.
    deployments = sa.table("deployments", sa.column("id", sa.String), sa.column("server_id", sa.String),
                           sa.column("generation", sa.Integer), sa.column("status", sa.String),
                           sa.column("next_attempt_at", sa.DateTime))
    waiting = conn.execute(sa.select(deployments.c.server_id, sa.func.max(deployments.c.generation))
                           .where(deployments.c.status.in_(("pending", "retrying")))
                           .group_by(deployments.c.server_id)).all()
    for server_id, generation in waiting:
        conn.execute(deployments.update().where(
            deployments.c.server_id == server_id, deployments.c.status.in_(("pending", "retrying")),
            deployments.c.generation < generation).values(status="superseded"))

    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changes", sa.Integer(), server_default="1", nullable=False))
        batch_op.alter_column("next_attempt_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch_op.drop_index("ix_deployments_status_next_attempt_at")
    agentless = sa.select(servers.c.id).where(servers.c.agent_url.is_(None))
    conn.execute(deployments.update().where(deployments.c.status.in_(("pending", "retrying")),
                                            deployments.c.server_id.in_(agentless)).values(next_attempt_at=None))
    op.create_index("uq_deployments_due_server", "deployments", ["server_id"], unique=True,
                    sqlite_where=DUE, postgresql_where=DUE)
    op.create_index("ix_deployments_due_at", "deployments", ["next_attempt_at"],
                    sqlite_where=SCHEDULED, postgresql_where=SCHEDULED)


def downgrade() -> None:
    op.drop_index("ix_deployments_due_at", table_name="deployments")
    op.drop_index("uq_deployments_due_server", table_name="deployments")
    conn = op.get_bind()
    deployments = sa.table("deployments", sa.column("next_attempt_at", sa.DateTime), sa.column("updated_at", sa.DateTime))
    conn.execute(deployments.update().where(deployments.c.next_attempt_at.is_(None))
                 .values(next_attempt_at=deployments.c.updated_at))
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.alter_column("next_attempt_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.drop_column("changes")
        batch_op.create_index("ix_deployments_status_next_attempt_at", ["status", "next_attempt_at"], unique=False)

    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applied_config", sa.JSON(), nullable=True))
    servers = sa.table("servers", sa.column("id", sa.String), sa.column("applied_config", sa.JSON),
                       sa.column("applied_head", sa.JSON), sa.column("applied_generation", sa.Integer))
    names = sa.table("applied_names", sa.column("server_id", sa.String), sa.column("hostname", sa.String),
                     sa.column("service", sa.String), sa.column("fingerprint", sa.String))
    for server_id, head, generation in conn.execute(
            sa.select(servers.c.id, servers.c.applied_head, servers.c.applied_generation)).all():
        if not head:
            continue
        document = {"generation": generation, **head, "mail": {}, "webmail": {}}
        for hostname, service, fp in conn.execute(sa.select(names.c.hostname, names.c.service, names.c.fingerprint)
                                                  .where(names.c.server_id == server_id)):
            document[service][hostname] = fp
        document["mail"] = dict(sorted(document["mail"].items()))
        document["webmail"] = dict(sorted(document["webmail"].items()))
        conn.execute(servers.update().where(servers.c.id == server_id).values(applied_config=document))
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("applied_head")
        batch_op.drop_column("applied_digest")
    op.drop_table("pending_names")
    op.drop_index("ix_applied_names_server_fingerprint", table_name="applied_names")
    op.drop_table("applied_names")
