"""tracked copies: messages.track_id and its partial index

Revision ID: mai0009
Revises: mai0008
Create Date: 2026-12-04 13:10:00

Issue 10 point 5: a colleague's copy of a message sent inside the organisation carries the
id of its central sent_copies row; read with the flags, so STORE on untracked mail costs nothing.
"""
from alembic import op
import sqlalchemy as sa


revision = 'mai0009'
down_revision = 'mai0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('track_id', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_messages_track', ['track_id'], unique=False,
                              sqlite_where=sa.text('track_id IS NOT NULL'),
                              postgresql_where=sa.text('track_id IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_track')
        batch_op.drop_column('track_id')
