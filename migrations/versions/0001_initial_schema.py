"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28

Accounts and API tokens, certificates (key sealed) with one row per SAN, servers,
domains, bindings, and the deployment outbox with its attempts.
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('name', name=op.f('uq_accounts_name'))
    )
    op.create_table('api_tokens',
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=True),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_api_tokens_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_account_id'), ['account_id'], unique=False)

    op.create_table('certificates',
    sa.Column('account_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('issuer', sa.Text(), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('sans', sa.JSON(), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=False),
    sa.Column('not_after', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fingerprint_sha256', sa.String(length=64), nullable=False),
    sa.Column('key_type', sa.String(length=16), nullable=False),
    sa.Column('key_bits', sa.Integer(), nullable=False),
    sa.Column('self_signed', sa.Boolean(), nullable=False),
    sa.Column('trusted', sa.Boolean(), nullable=False),
    sa.Column('chain_length', sa.Integer(), nullable=False),
    sa.Column('certificate_pem', sa.Text(), nullable=False),
    sa.Column('chain_pem', sa.Text(), nullable=False),
    sa.Column('key_ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('key_wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('master_key_id', sa.String(length=32), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_certificates_account_id_accounts'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificates'))
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('ix_certificates_account_not_after', ['account_id', 'not_after'], unique=False)
        batch_op.create_index('ix_certificates_account_created', ['account_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_certificates_created', ['created_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificates_fingerprint_sha256'), ['fingerprint_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificates_not_after'), ['not_after'], unique=False)

    op.create_table('certificate_names',
    sa.Column('certificate_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=253), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_certificate_names_certificate_id_certificates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('certificate_id', 'name', name=op.f('pk_certificate_names'))
    )
    with op.batch_alter_table('certificate_names', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificate_names_name'), ['name'], unique=False)

    op.create_table('servers',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('hostname', sa.String(length=253), nullable=False),
    sa.Column('software', sa.String(length=32), nullable=False),
    sa.Column('agent_url', sa.String(length=500), nullable=True),
    sa.Column('agent_tls_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('mail_certificate_id', sa.String(length=36), nullable=False),
    sa.Column('default_certificate_id', sa.String(length=36), nullable=False),
    sa.Column('desired_generation', sa.Integer(), nullable=False),
    sa.Column('applied_generation', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['default_certificate_id'], ['certificates.id'], name=op.f('fk_servers_default_certificate_id_certificates'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['mail_certificate_id'], ['certificates.id'], name=op.f('fk_servers_mail_certificate_id_certificates'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_servers')),
    sa.UniqueConstraint('name', name=op.f('uq_servers_name'))
    )
    with op.batch_alter_table('servers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_servers_default_certificate_id'), ['default_certificate_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_servers_hostname'), ['hostname'], unique=False)
        batch_op.create_index(batch_op.f('ix_servers_mail_certificate_id'), ['mail_certificate_id'], unique=False)

    op.create_table('deployments',
    sa.Column('server_id', sa.String(length=36), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.JSON(), nullable=True),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['server_id'], ['servers.id'], name=op.f('fk_deployments_server_id_servers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployments')),
    sa.UniqueConstraint('server_id', 'generation', name=op.f('uq_deployments_server_id'))
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index('ix_deployments_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)

    op.create_table('domains',
    sa.Column('name', sa.String(length=253), nullable=False),
    sa.Column('server_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_domains_account_id_accounts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['server_id'], ['servers.id'], name=op.f('fk_domains_server_id_servers'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_domains')),
    sa.UniqueConstraint('name', name=op.f('uq_domains_name'))
    )
    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_domains_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_domains_server_id'), ['server_id'], unique=False)

    op.create_table('bindings',
    sa.Column('domain_id', sa.String(length=36), nullable=False),
    sa.Column('service', sa.String(length=16), nullable=False),
    sa.Column('certificate_id', sa.String(length=36), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_bindings_certificate_id_certificates'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_bindings_domain_id_domains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bindings')),
    sa.UniqueConstraint('domain_id', 'service', name=op.f('uq_bindings_domain_id'))
    )
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bindings_certificate_id'), ['certificate_id'], unique=False)

    op.create_table('deployment_attempts',
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('bytes_sent', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_deployment_attempts_deployment_id_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_attempts'))
    )
    with op.batch_alter_table('deployment_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployment_attempts_deployment_id'), ['deployment_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('deployment_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployment_attempts_deployment_id'))

    op.drop_table('deployment_attempts')
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bindings_certificate_id'))

    op.drop_table('bindings')
    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_domains_server_id'))
        batch_op.drop_index(batch_op.f('ix_domains_account_id'))

    op.drop_table('domains')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index('ix_deployments_status_next_attempt_at')

    op.drop_table('deployments')
    with op.batch_alter_table('servers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_servers_mail_certificate_id'))
        batch_op.drop_index(batch_op.f('ix_servers_hostname'))
        batch_op.drop_index(batch_op.f('ix_servers_default_certificate_id'))

    op.drop_table('servers')
    with op.batch_alter_table('certificate_names', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_names_name'))

    op.drop_table('certificate_names')
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificates_not_after'))
        batch_op.drop_index(batch_op.f('ix_certificates_fingerprint_sha256'))
        batch_op.drop_index('ix_certificates_account_not_after')

    op.drop_table('certificates')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_account_id'))

    op.drop_table('api_tokens')
    op.drop_table('accounts')
