"""card revisions

Revision ID: dir0023
Revises: dir0022
Create Date: 2026-12-04 22:30:00

Issue 10: accounts.updated_at and departments.updated_at record when what the address
book shows of a person (name, department, enabled) or a department (name) last changed,
so a CardDAV vCard carries a REV (RFC 6350 §6.7.4). NULL: unchanged since created_at.
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0023'
down_revision = 'dir0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('departments', sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('departments') as batch:
        batch.drop_column('updated_at')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('updated_at')
