"""offer codes: one code per recipient from a campaign's code pool, each code given once

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 10:00:00

* ``offer_codes``: which code of which pool (a CSV named by the campaign file) went to which recipient of which
  campaign occurrence; unique per (pool, code) and per (campaign, occurrence, customer), so replanning finds the same
  code and no code is ever handed out twice.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        'offer_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('pool', _STR(), nullable=False),
        sa.Column('code', _STR(), nullable=False),
        sa.Column('campaign', _STR(), nullable=False),
        sa.Column('occurrence_key', _STR(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('assigned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('pool', 'code', name='uq_offer_code'),
        sa.UniqueConstraint('campaign', 'occurrence_key', 'customer_id', name='uq_offer_code_recipient'),
    )
    op.create_index('ix_offer_codes_pool', 'offer_codes', ['pool'])
    op.create_index('ix_offer_codes_campaign', 'offer_codes', ['campaign'])
    op.create_index('ix_offer_codes_customer_id', 'offer_codes', ['customer_id'])


def downgrade() -> None:
    op.drop_index('ix_offer_codes_customer_id', table_name='offer_codes')
    op.drop_index('ix_offer_codes_campaign', table_name='offer_codes')
    op.drop_index('ix_offer_codes_pool', table_name='offer_codes')
    op.drop_table('offer_codes')
