"""unfinished messages keep their payload; field-level quarantine

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 02:00:00

* ``messages.payload``: what the planner decided, kept while a message is unfinished (``pending``/``sending``/
  retryable ``failed``) so a later run finishes it without planning it again; the new ``sending`` state needs no
  schema change (``state`` is a string).
* ``quarantine.scope``: ``row`` (the row was set aside) or ``field`` (the row was loaded without that value).
* ``source_loads.fields_quarantined``: how many cells were set aside in rows that were still loaded.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.JSON(), nullable=True))
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(), server_default='row', nullable=False)
        )
    with op.batch_alter_table('source_loads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fields_quarantined', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('source_loads', schema=None) as batch_op:
        batch_op.drop_column('fields_quarantined')
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_column('scope')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('payload')
