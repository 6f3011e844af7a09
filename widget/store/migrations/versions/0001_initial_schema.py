"""initial schema

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('analytics_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('dedupe', sa.String(length=255), nullable=True),
    sa.Column('props', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('company_id', 'dedupe', name='uq_analytics_dedupe')
    )
    with op.batch_alter_table('analytics_events', schema=None) as batch_op:
        batch_op.create_index('ix_analytics_company_time', ['company_id', 'created_at'], unique=False)

    op.create_table('companies',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('api_key_hash', sa.String(length=64), nullable=False),
    sa.Column('frame_origins', sa.Text(), nullable=False),
    sa.Column('omnichannel_url', sa.String(length=2048), nullable=True),
    sa.Column('omnichannel_secret', sa.String(length=255), nullable=True),
    sa.Column('last_created_at', sa.BigInteger(), nullable=False),
    sa.Column('ticket_seq', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('api_key_hash')
    )
    op.create_table('idempotency_keys',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('route', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('response', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'route', 'key')
    )
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.BigInteger(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('done_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['done_at', 'next_attempt_at'], unique=False)

    op.create_table('contacts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('phone', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('deleted_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('rooms',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('room_id', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('deal_id', sa.String(length=40), nullable=True),
    sa.Column('deal_mark_at', sa.BigInteger(), nullable=True),
    sa.Column('deal_mark_id', sa.String(length=40), nullable=True),
    sa.Column('ticket_id', sa.String(length=40), nullable=True),
    sa.Column('ticket_mark_at', sa.BigInteger(), nullable=True),
    sa.Column('ticket_mark_id', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], ),
    sa.PrimaryKeyConstraint('company_id', 'room_id')
    )
    op.create_table('timeline_entries',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('record_kind', sa.String(length=8), nullable=False),
    sa.Column('record_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('creator', sa.String(length=16), nullable=False),
    sa.Column('room_id', sa.String(length=128), nullable=False),
    sa.Column('chat_preview', sa.Text(), nullable=True),
    sa.Column('chat_preview_status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('timeline_entries', schema=None) as batch_op:
        batch_op.create_index('ix_timeline_created', ['created_at'], unique=False)
        batch_op.create_index('ix_timeline_record', ['record_kind', 'record_id'], unique=False)

    op.create_table('deals',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('stage', sa.String(length=255), nullable=False),
    sa.Column('pipeline', sa.String(length=255), nullable=False),
    sa.Column('room_id', sa.String(length=128), nullable=True),
    sa.Column('contact_id', sa.String(length=40), nullable=True),
    sa.Column('creator_flag', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=255), nullable=True),
    sa.Column('external_url', sa.String(length=2048), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('deleted_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], ),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.create_index('ix_deals_company_room', ['company_id', 'room_id'], unique=False)

    op.create_table('tickets',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('unique_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=255), nullable=False),
    sa.Column('room_id', sa.String(length=128), nullable=True),
    sa.Column('contact_id', sa.String(length=40), nullable=True),
    sa.Column('creator_flag', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=255), nullable=True),
    sa.Column('external_url', sa.String(length=2048), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('deleted_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], ),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('company_id', 'unique_id', name='uq_tickets_company_unique_id')
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_company_room', ['company_id', 'room_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_company_room')

    op.drop_table('tickets')
    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.drop_index('ix_deals_company_room')

    op.drop_table('deals')
    with op.batch_alter_table('timeline_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_timeline_record')
        batch_op.drop_index('ix_timeline_created')

    op.drop_table('timeline_entries')
    op.drop_table('rooms')
    op.drop_table('contacts')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    op.drop_table('idempotency_keys')
    op.drop_table('companies')
    with op.batch_alter_table('analytics_events', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_company_time')

    op.drop_table('analytics_events')
