"""messages by date: an index for the webmail's list pages

Revision ID: mai0008
Revises: mai0004
Create Date: 2026-12-04 09:35:00

The webmail lists a folder by arrival date, 50 at a time (issue 10): with this index a
page of a 10,000-message folder is read as an index range instead of sorting the folder.
"""
from alembic import op


revision = 'mai0008'
down_revision = 'mai0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_date', ['folder_id', 'internal_date', 'uid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_date')
