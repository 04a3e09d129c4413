"""the model registry: every trained model with version, data window, parameters, evaluation and whether it serves

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 16:45:00

* ``model_versions``: one row per train run (``models/registry.py``): the parameters it was fitted with, the data
  window and holdout it was judged on, the evaluation (JSON: figures only, no customer data), its status
  (candidate | serving | retired | rejected), when it was promoted and retired, why, and whether it was pinned by hand.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString
_WHEN = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'model_versions',
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('trained_at', _WHEN(), nullable=False),
        sa.Column('status', _STR(), nullable=False),
        sa.Column('parameters', sa.JSON(), nullable=False),
        sa.Column('code_version', _STR(), nullable=False),
        sa.Column('first_interaction_at', _WHEN(), nullable=True),
        sa.Column('last_interaction_at', _WHEN(), nullable=True),
        sa.Column('holdout_start', _WHEN(), nullable=True),
        sa.Column('holdout_end', _WHEN(), nullable=True),
        sa.Column('evaluation', sa.JSON(), nullable=False),
        sa.Column('reason', _STR(), nullable=False),
        sa.Column('promoted_at', _WHEN(), nullable=True),
        sa.Column('retired_at', _WHEN(), nullable=True),
        sa.Column('pinned', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('version'),
    )


def downgrade() -> None:
    op.drop_table('model_versions')
