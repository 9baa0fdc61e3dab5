"""queue priority and links

Revision ID: dir0019
Revises: dir0021
Create Date: 2026-12-04 19:45:00

Issue 12 point 4: a priority per queued recipient (特急, 加急, routine) that claims follow, the link a
row waits for, and the state of outbound links that went down (probed by one node at a time).
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0019'
down_revision = 'dir0021'  # dir0013 in the brief; relinked after dir0021 (leases) landed on main
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('queue_recipients', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), server_default='2', nullable=False))
        batch_op.add_column(sa.Column('link', sa.String(length=300), nullable=True))
        batch_op.create_index('ix_queue_claim', ['state', 'priority', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_queue_link', ['link'], unique=False)
    op.create_table('queue_links',
    sa.Column('link', sa.String(length=300), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('down_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_probe_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('probe_by', sa.String(length=64), nullable=True),
    sa.Column('probe_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('link'),
    )


def downgrade() -> None:
    op.drop_table('queue_links')
    with op.batch_alter_table('queue_recipients', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_index('ix_queue_link')
        batch_op.drop_index('ix_queue_claim')
        batch_op.drop_column('link')
        batch_op.drop_column('priority')
