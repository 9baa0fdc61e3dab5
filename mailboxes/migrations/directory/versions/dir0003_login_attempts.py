"""login attempts shared by every process and node

Revision ID: dir0003
Revises: dir0002
Create Date: 2026-12-04 09:00:00

The failed-login throttle kept its counts in each process's memory, so guesses spread over
several worker processes or nodes each met a fresh limit (issue 9). Attempts in flight and
failed ones are rows in the directory database now.
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0003'
down_revision = 'dir0002'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('login_attempts',
    sa.Column('id', ID, nullable=False),
    sa.Column('ip_key', sa.String(length=64), nullable=False),
    sa.Column('account_key', sa.String(length=320), nullable=True),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('failed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_attempts_ip_key'), ['ip_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_attempts_account_key'), ['account_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_attempts_at'), ['at'], unique=False)


def downgrade() -> None:
    op.drop_table('login_attempts')
