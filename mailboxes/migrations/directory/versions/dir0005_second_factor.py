"""second factor

Revision ID: dir0005
Revises: dir0004
Create Date: 2026-12-04 13:05:00

TOTP secrets, one-time recovery codes and pending second-factor sign-ins (issue 10).
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0005'
down_revision = 'dir0004'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('totp_secrets',
    sa.Column('account_id', ID, autoincrement=False, nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_step', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id'),
    )
    op.create_table('recovery_codes',
    sa.Column('id', ID, nullable=False),
    sa.Column('account_id', ID, nullable=False),
    sa.Column('code_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_codes_account_id'), ['account_id'], unique=False)
    op.create_table('second_factor_challenges',
    sa.Column('id', ID, nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('account_id', ID, nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('second_factor_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_second_factor_challenges_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_second_factor_challenges_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('second_factor_challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_second_factor_challenges_expires_at'))
        batch_op.drop_index(batch_op.f('ix_second_factor_challenges_account_id'))
    op.drop_table('second_factor_challenges')
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recovery_codes_account_id'))
    op.drop_table('recovery_codes')
    op.drop_table('totp_secrets')
