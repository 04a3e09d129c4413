"""in-app cards for apps that pull them: one row per card, read by the pull API

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 18:50:00

* ``inapp_cards``: the cards the ``pull://`` in-app adapter stored (the card JSON, its expiry, and when a retraction
  withdrew it), served by ``GET /v1/customers/{external_id}/cards``; indexed by customer.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString
_WHEN = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'inapp_cards',
        sa.Column('id', _STR(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('card', sa.JSON(), nullable=False),
        sa.Column('campaign', _STR(), nullable=True),
        sa.Column('created_at', _WHEN(), nullable=False),
        sa.Column('expires_at', _WHEN(), nullable=False),
        sa.Column('retracted_at', _WHEN(), nullable=True),
        sa.Column('updated_at', _WHEN(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_inapp_cards_customer_id'), 'inapp_cards', ['customer_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_inapp_cards_customer_id'), table_name='inapp_cards')
    op.drop_table('inapp_cards')
