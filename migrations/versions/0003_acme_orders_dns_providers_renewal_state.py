"""acme orders, dns providers, renewal state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

ACME: DNS providers (secrets sealed), one ACME account per directory, certificate orders,
and the renewal state of each ACME certificate.
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('acme_accounts',
    sa.Column('directory_url', sa.String(length=500), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('account_uri', sa.Text(), nullable=False),
    sa.Column('key_ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('key_wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('master_key_id', sa.String(length=32), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acme_accounts')),
    sa.UniqueConstraint('directory_url', name=op.f('uq_acme_accounts_directory_url'))
    )
    op.create_table('dns_providers',
    sa.Column('account_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('secret_ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('secret_wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('master_key_id', sa.String(length=32), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_dns_providers_account_id_accounts'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dns_providers'))
    )
    with op.batch_alter_table('dns_providers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dns_providers_account_id'), ['account_id'], unique=False)

    op.create_table('certificate_orders',
    sa.Column('account_id', sa.String(length=36), nullable=True),
    sa.Column('domain', sa.String(length=253), nullable=True),
    sa.Column('names', sa.JSON(), nullable=False),
    sa.Column('challenge', sa.String(length=16), nullable=False),
    sa.Column('dns_provider_id', sa.String(length=36), nullable=True),
    sa.Column('key_type', sa.String(length=16), nullable=False),
    sa.Column('bind', sa.JSON(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('certificate_id', sa.String(length=36), nullable=True),
    sa.Column('result_certificate_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('authorizations', sa.JSON(), nullable=False),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_certificate_orders_account_id_accounts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_certificate_orders_certificate_id_certificates'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['dns_provider_id'], ['dns_providers.id'], name=op.f('fk_certificate_orders_dns_provider_id_dns_providers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['result_certificate_id'], ['certificates.id'], name=op.f('fk_certificate_orders_result_certificate_id_certificates'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate_orders'))
    )
    with op.batch_alter_table('certificate_orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificate_orders_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificate_orders_certificate_id'), ['certificate_id'], unique=False)
        batch_op.create_index('ix_certificate_orders_status_created', ['status', 'created_at'], unique=False)

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('order_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('renewal_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('renewal_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('renewal_error', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('renewal_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_renewal_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_certificates_renewal_at'), ['renewal_at'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificates_renewal_at'))
        batch_op.drop_column('next_renewal_attempt_at')
        batch_op.drop_column('renewal_attempts')
        batch_op.drop_column('renewal_error')
        batch_op.drop_column('renewal_status')
        batch_op.drop_column('renewal_at')
        batch_op.drop_column('order_id')

    with op.batch_alter_table('certificate_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_certificate_orders_status_created')
        batch_op.drop_index(batch_op.f('ix_certificate_orders_certificate_id'))
        batch_op.drop_index(batch_op.f('ix_certificate_orders_account_id'))

    op.drop_table('certificate_orders')
    with op.batch_alter_table('dns_providers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dns_providers_account_id'))

    op.drop_table('dns_providers')
    op.drop_table('acme_accounts')

