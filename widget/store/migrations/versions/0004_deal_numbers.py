"""deals get a per-company number an agent can read aloud (DEAL-000042)

Existing deals are numbered per company in creation order, and each company's
counter continues after its last one.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('companies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deal_seq', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.String(length=32), nullable=True))

    conn = op.get_bind()
    deals = sa.table('deals', sa.column('id'), sa.column('company_id'), sa.column('created_at'), sa.column('number'))
    companies = sa.table('companies', sa.column('id'), sa.column('deal_seq'))
    counts: dict[str, int] = {}
    rows = conn.execute(sa.select(deals.c.id, deals.c.company_id).order_by(
        deals.c.company_id, deals.c.created_at, deals.c.id)).all()
    for deal_id, company_id in rows:
        counts[company_id] = counts.get(company_id, 0) + 1
        conn.execute(deals.update().where(deals.c.id == deal_id).values(number=f"DEAL-{counts[company_id]:06d}"))
    for company_id, count in counts.items():
        conn.execute(companies.update().where(companies.c.id == company_id).values(deal_seq=count))

    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.alter_column('number', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint('uq_deals_company_number', ['company_id', 'number'])


def downgrade() -> None:
    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.drop_constraint('uq_deals_company_number', type_='unique')
        batch_op.drop_column('number')
    with op.batch_alter_table('companies', schema=None) as batch_op:
        batch_op.drop_column('deal_seq')
