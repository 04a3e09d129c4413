"""the customer's answers: suppression list, clicks, handled webhooks, deferred messages, erasure

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 14:30:00

* ``suppressions``: addresses never mailed again (hard bounce, complaint, SMTP 5xx, erasure), by salted hash.
* ``clicks``: tracked-link clicks per ledger row.
* ``webhook_events``: provider events already handled, so a retried webhook is harmless.
* ``messages.not_before``: quiet hours defer a message instead of dropping it; ``messages.marketing``: counts
  against the frequency cap.
* ``install_secrets``: the suppression list's hash salt, made once per database.
* ``customers.erased_at``: `omnicast forget` blanks the profile and dates it; ``source_loads.forgotten_skipped``:
  rows of erased people a sync left out.
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        'suppressions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel', _STR(), nullable=False),
        sa.Column('address_hash', _STR(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=True),
        sa.Column('reason', _STR(), nullable=False),
        sa.Column('source', _STR(), nullable=False),
        sa.Column('detail', _STR(), nullable=True),
        sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('channel', 'address_hash', name='uq_suppression_address'),
    )
    op.create_index('ix_suppressions_address_hash', 'suppressions', ['address_hash'])
    op.create_index('ix_suppressions_customer_id', 'suppressions', ['customer_id'])
    op.create_table(
        'clicks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('customer_id', sa.Integer(), nullable=True),
        sa.Column('campaign', _STR(), nullable=True),
        sa.Column('variant', _STR(), nullable=True),
        sa.Column('url', _STR(), nullable=False),
        sa.Column('clicked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_clicks_message_id', 'clicks', ['message_id'])
    op.create_index('ix_clicks_customer_id', 'clicks', ['customer_id'])
    op.create_index('ix_clicks_campaign', 'clicks', ['campaign'])
    op.create_table(
        'webhook_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('provider', _STR(), nullable=False),
        sa.Column('event_id', _STR(), nullable=False),
        sa.Column('kind', _STR(), nullable=False),
        sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('provider', 'event_id', name='uq_webhook_event'),
    )
    op.create_table(
        'install_secrets',
        sa.Column('name', _STR(), nullable=False),
        sa.Column('value', _STR(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('not_before', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('marketing', sa.Boolean(), server_default=sa.true(), nullable=False))
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('source_loads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forgotten_skipped', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('source_loads', schema=None) as batch_op:
        batch_op.drop_column('forgotten_skipped')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('marketing')
        batch_op.drop_column('not_before')
    op.drop_table('install_secrets')
    op.drop_table('webhook_events')
    op.drop_index('ix_clicks_campaign', table_name='clicks')
    op.drop_index('ix_clicks_customer_id', table_name='clicks')
    op.drop_index('ix_clicks_message_id', table_name='clicks')
    op.drop_table('clicks')
    op.drop_index('ix_suppressions_customer_id', table_name='suppressions')
    op.drop_index('ix_suppressions_address_hash', table_name='suppressions')
    op.drop_table('suppressions')
