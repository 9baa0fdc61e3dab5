"""retention and legal hold

Revision ID: dir0017
Revises: dir0015
Create Date: 2026-12-04 20:20:00

Issue 13 point 4: legal holds, retention policies and the per-account claims of retention runs.
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0017'
down_revision = 'dir0015'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('legal_holds',
    sa.Column('id', ID, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('account_id', ID, nullable=True),
    sa.Column('department_code', sa.String(length=64), nullable=True),
    sa.Column('criteria', sa.Text(), nullable=False),
    sa.Column('placed_by', sa.String(length=320), nullable=False),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_by', sa.String(length=320), nullable=True),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index(op.f('ix_legal_holds_released_at'), 'legal_holds', ['released_at'], unique=False)
    op.create_table('retention_policies',
    sa.Column('id', ID, nullable=False),
    sa.Column('folder_kind', sa.String(length=16), nullable=False),
    sa.Column('department_code', sa.String(length=64), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('folder_kind', 'department_code', name='uq_retention_kind_dept'),
    sqlite_autoincrement=True
    )
    op.create_table('retention_claims',
    sa.Column('account_id', ID, autoincrement=False, nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('account_id')
    )


def downgrade() -> None:
    op.drop_table('retention_claims')
    op.drop_table('retention_policies')
    op.drop_index(op.f('ix_legal_holds_released_at'), table_name='legal_holds')
    op.drop_table('legal_holds')
