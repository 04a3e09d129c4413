"""audience members: who omnicast last put into each ad audience on each platform, with the hashes it uploaded

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 18:30:00

* ``audience_members``: one row per (audience, platform, customer) while the person is in the audience or on the
  way in or out; the sync plans additions and removals against it, and a removal uploads the stored hashes.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        'audience_members',
        sa.Column('audience', _STR(), nullable=False),
        sa.Column('platform', _STR(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('state', _STR(), nullable=False),
        sa.Column('identifiers', sa.JSON(), nullable=False),
        sa.Column('occurrence_key', _STR(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('audience', 'platform', 'customer_id'),
    )


def downgrade() -> None:
    op.drop_table('audience_members')
