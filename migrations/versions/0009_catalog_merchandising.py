"""catalogue fields marketer rules read: inventory, published, gift card

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 16:45:00

* ``products.inventory_quantity``: units in stock from the export's ``Variant Inventory Qty`` (NULL: not tracked,
  which counts as in stock); the recommendation rules leave out products at 0 or below.
* ``products.published``: the export's ``Published``; existing rows are published (as they were treated so far).
* ``products.gift_card``: the export's ``Gift Card``; existing rows are not gift cards until the next sync says so.
* ``recommendations.rules``: what the marketer rules did to each pick (``pin:NAME, boost:NAME``), for marketers
  only: the explanation customers see is never rewritten.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inventory_quantity', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('published', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('gift_card', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('recommendations', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('rules', sqlmodel.sql.sqltypes.AutoString(), server_default='', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('recommendations', schema=None) as batch_op:
        batch_op.drop_column('rules')
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_column('gift_card')
        batch_op.drop_column('published')
        batch_op.drop_column('inventory_quantity')
