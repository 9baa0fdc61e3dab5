"""workflow events: sources, events, per-person preferences and digest items

Revision ID: dir0009
Revises: dir0008
Create Date: 2026-12-04 16:40:00

Issue 11: workflow systems (sources) post events through /api/v1/events with a bearer token of
kind "source"; each accepted event is a row committed before the 202, turned into mail by a worker.
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0009'
down_revision = 'dir0008'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
NEVER_REUSED = {'sqlite_autoincrement': True}


def upgrade() -> None:
    op.create_table('event_sources',
    sa.Column('id', ID, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sqlite_autoincrement=True,
    )
    # table_kwargs: SQLite rebuilds the table, which must keep AUTOINCREMENT (ids never reused, dir0002)
    with op.batch_alter_table('api_tokens', schema=None, table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.alter_column('owner_id', existing_type=ID, nullable=True)
        batch_op.add_column(sa.Column('source_id', ID, nullable=True))
        batch_op.create_foreign_key('fk_api_tokens_source_id', 'event_sources', ['source_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_api_tokens_source_id'), ['source_id'], unique=False)
    op.create_table('events',
    sa.Column('id', ID, nullable=False),
    sa.Column('source_id', ID, nullable=False),
    sa.Column('ext_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('item', sa.String(length=128), nullable=False),
    sa.Column('urgency', sa.String(length=8), nullable=False),
    sa.Column('locale', sa.String(length=8), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.LargeBinary(length=32), nullable=False),
    sa.Column('recipients', sa.Text(), nullable=False),
    sa.Column('unknown', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['event_sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_id', 'ext_id', name='uq_events_source_ext'),
    sqlite_autoincrement=True,
    )
    op.create_index('ix_events_due', 'events', ['state', 'next_attempt_at'], unique=False)
    op.create_table('event_preferences',
    sa.Column('account_id', ID, nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'type'),
    )
    op.create_table('event_digest_items',
    sa.Column('id', ID, nullable=False),
    sa.Column('event_id', ID, nullable=False),
    sa.Column('account_id', ID, nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'account_id', name='uq_event_digest_items'),
    sqlite_autoincrement=True,
    )
    op.create_index('ix_event_digest_due', 'event_digest_items', ['sent_at', 'due_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_event_digest_due', table_name='event_digest_items')
    op.drop_table('event_digest_items')
    op.drop_table('event_preferences')
    op.drop_index('ix_events_due', table_name='events')
    op.drop_table('events')
    with op.batch_alter_table('api_tokens', schema=None, table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_source_id'))
        batch_op.drop_constraint('fk_api_tokens_source_id', type_='foreignkey')
        batch_op.drop_column('source_id')
        batch_op.alter_column('owner_id', existing_type=ID, nullable=False)
    op.drop_table('event_sources')
