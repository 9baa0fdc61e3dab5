"""named leases

Revision ID: dir0021
Revises: dir0013
Create Date: 2026-12-04 19:45:00

One holder at a time for jobs that must run on one node only (mailboxes/leases.py); first
user: the documents intake, which ran in every worker process and on every node.
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0021'
down_revision = 'dir0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('leases')
