"""related products (item-to-item co-purchase and content-based), for product-page and cart placements

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:45:00

* ``related_products``: per product, its related products best first (``rank``), with the score, what it rests on
  (``kind``: ``co_purchase``, ``content`` or ``blend``) and the explanation; replaced as a whole by each training
  and read by ``GET /v1/products/{id}/related`` and the abandoned-cart plan. Keyed by (product, rank).
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        'related_products',
        sa.Column('product_id', sa.Integer(), nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
        sa.Column('related_product_id', sa.Integer(), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('kind', _STR(), nullable=False),
        sa.Column('explanation', _STR(), nullable=False),
        sa.Column('trained_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['product_id'], ['products.id']),
        sa.ForeignKeyConstraint(['related_product_id'], ['products.id']),
        sa.PrimaryKeyConstraint('product_id', 'rank'),
    )


def downgrade() -> None:
    op.drop_table('related_products')
