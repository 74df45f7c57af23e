"""actions and webhooks

Actions are a tenant's webhook receivers (secrets stored encrypted, a previous
secret kept during rotation). Deliveries are action executions with their
retry state and lease; each attempt is a row of its own. Accepted inbound
webhooks are stored in webhook_events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('actions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('secret_enc', sa.Text(), nullable=False),
    sa.Column('previous_secret_enc', sa.Text(), nullable=True),
    sa.Column('previous_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_actions_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_actions'))
    )
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.create_index('uq_actions_tenant_id_name', ['tenant_id', 'name'], unique=True)

    op.create_table('deliveries',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=32), nullable=False),
    sa.Column('action_id', sa.String(length=32), nullable=True),
    sa.Column('action_name', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('plan_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempt_count', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_token', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('result_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['action_id'], ['actions.id'], name=op.f('fk_deliveries_action_id_actions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_deliveries_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_action_id'), ['action_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_plan_id'), ['plan_id'], unique=False)
        batch_op.create_index('ix_deliveries_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_deliveries_tenant_id_created_at', ['tenant_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('uq_deliveries_tenant_id_idempotency_key', ['tenant_id', 'idempotency_key'], unique=True)

    op.create_table('delivery_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.String(length=32), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('response_excerpt', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_delivery_attempts_delivery_id_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts'))
    )
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_attempts_delivery_id'), ['delivery_id'], unique=False)

    op.create_table('webhook_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('webhook_id', sa.String(length=256), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=True),
    sa.Column('sent_at', sa.BigInteger(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.String(length=32), nullable=True),
    sa.Column('delivery_id', sa.String(length=32), nullable=True),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events'))
    )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_events_tenant_id'), ['tenant_id'], unique=False)


def downgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_events_tenant_id'))
    op.drop_table('webhook_events')
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_attempts_delivery_id'))
    op.drop_table('delivery_attempts')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('uq_deliveries_tenant_id_idempotency_key')
        batch_op.drop_index('ix_deliveries_tenant_id_created_at')
        batch_op.drop_index('ix_deliveries_status_next_attempt_at')
        batch_op.drop_index(batch_op.f('ix_deliveries_plan_id'))
        batch_op.drop_index(batch_op.f('ix_deliveries_action_id'))
    op.drop_table('deliveries')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_index('uq_actions_tenant_id_name')
    op.drop_table('actions')
