"""department leaders

Revision ID: dir0022
Revises: dir0016
Create Date: 2026-12-04 22:30:00

Issue 13 point 2: a department's leader approves its held mail (departments.leader_id);
a held message records the leader asked to approve it (held_messages.approver, NULL: the office).
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0022'
down_revision = 'dir0016'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.add_column('departments', sa.Column('leader_id', ID, nullable=True))
    op.add_column('held_messages', sa.Column('approver', sa.String(length=320), nullable=True))
    op.create_index('ix_held_approver', 'held_messages', ['approver', 'state'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_held_approver', table_name='held_messages')
    with op.batch_alter_table('held_messages') as batch:
        batch.drop_column('approver')
    with op.batch_alter_table('departments') as batch:
        batch.drop_column('leader_id')
