"""read status: sent messages and their colleagues' copies

Revision ID: dir0007
Revises: dir0006
Create Date: 2026-12-04 13:10:00

Issue 10 point 5: for a message a local account submitted, one row per colleague's copy
delivered on this server (delivered, first read, recalled), in the central database.
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0007'
down_revision = 'dir0006'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('sent_messages',
    sa.Column('id', ID, nullable=False),
    sa.Column('sender_id', ID, nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recalled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['sender_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('sent_messages', schema=None) as batch_op:
        batch_op.create_index('ix_sent_messages_sender', ['sender_id', 'message_id'], unique=False)
    op.create_table('sent_copies',
    sa.Column('id', ID, nullable=False),
    sa.Column('sent_id', ID, nullable=False),
    sa.Column('account_id', ID, nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_read_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recalled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sent_id'], ['sent_messages.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('sent_copies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sent_copies_sent_id'), ['sent_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sent_copies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sent_copies_sent_id'))
    op.drop_table('sent_copies')
    with op.batch_alter_table('sent_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_sent_messages_sender')
    op.drop_table('sent_messages')
