"""used CRM links: a signed CRM record link opens its page once

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('used_crm_links',
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('used_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    with op.batch_alter_table('used_crm_links', schema=None) as batch_op:
        batch_op.create_index('ix_used_crm_links_expires', ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('used_crm_links', schema=None) as batch_op:
        batch_op.drop_index('ix_used_crm_links_expires')

    op.drop_table('used_crm_links')
