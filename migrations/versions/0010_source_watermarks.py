"""incremental reads: per-source watermarks, and which platform and watermark each source load had

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 20:10:00

* ``source_watermarks``: per (source, resource), how far the last committed read got (``models/sync.py``); the next
  run of an API source asks only for what changed since.
* ``source_loads.platform``: where a source's rows came from (empty for the loads before: all from export files);
  ``source_loads.watermark``: the watermark the read reached (NULL for a file, read whole).
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString
_WHEN = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'source_watermarks',
        sa.Column('source', _STR(), nullable=False),
        sa.Column('resource', _STR(), nullable=False),
        sa.Column('watermark', _STR(), nullable=False),
        sa.Column('run_id', _STR(), nullable=False),
        sa.Column('updated_at', _WHEN(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'resource'),
    )
    with op.batch_alter_table('source_loads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('platform', _STR(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('watermark', _STR(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('source_loads', schema=None) as batch_op:
        batch_op.drop_column('watermark')
        batch_op.drop_column('platform')
    op.drop_table('source_watermarks')
