"""analytics events name their record: /stats counts records displayed, not displays

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('analytics_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_id', sa.String(length=40), nullable=True))
        batch_op.create_index('ix_analytics_record', ['company_id', 'record_id', 'name'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('analytics_events', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_record')
        batch_op.drop_column('record_id')
