"""identities looked up by external id, email and phone

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:00:00

An incremental sync reads only the stored identities its records can match (``models.identity.stored_identities``
with the records' external ids, emails and phones) instead of all of them; these indexes make each lookup one index
probe. (The unique ``(source, external_id)`` constraint cannot serve a lookup by external id alone: an analytics user
id names a Shopify customer.)
"""
from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identities_external_id'), ['external_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_identities_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_identities_phone'), ['phone'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identities_phone'))
        batch_op.drop_index(batch_op.f('ix_identities_email'))
        batch_op.drop_index(batch_op.f('ix_identities_external_id'))
