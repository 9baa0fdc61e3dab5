"""find a sent message's read-status rows by its queue id

Revision ID: dir0024
Revises: dir0023
Create Date: 2026-12-05 05:30:00

A copy whose first delivery failed temporarily is written later by the queue worker, which
knows only the queue id: its read-status row (sent_copies) is found through sent_messages.queue_id.
"""
from alembic import op


revision = 'dir0024'
down_revision = 'dir0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sent_messages_queue", "sent_messages", ["queue_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_sent_messages_queue", table_name="sent_messages", if_exists=True)
