"""held messages

Revision ID: dir0015
Revises: dir0020
Create Date: 2026-12-04 20:40:00

Issue 13: mail whose classification label does not allow some recipients is held
for approval in held_messages / held_recipients, never in the queue;
a department may name the default label of its mail (departments.label).
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0015'
down_revision = 'dir0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('held_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('mail_from', sa.String(length=320), nullable=False),
    sa.Column('submitter', sa.String(length=320), nullable=True),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('decided_by', sa.String(length=320), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index('ix_held_state', 'held_messages', ['state', 'id'], unique=False)
    op.create_table('held_recipients',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('held_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rcpt', sa.String(length=320), nullable=False),
    sa.ForeignKeyConstraint(['held_id'], ['held_messages.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index(op.f('ix_held_recipients_held_id'), 'held_recipients', ['held_id'], unique=False)
    op.add_column('departments', sa.Column('label', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('departments') as batch:
        batch.drop_column('label')
    op.drop_index(op.f('ix_held_recipients_held_id'), table_name='held_recipients')
    op.drop_table('held_recipients')
    op.drop_index('ix_held_state', table_name='held_messages')
    op.drop_table('held_messages')
