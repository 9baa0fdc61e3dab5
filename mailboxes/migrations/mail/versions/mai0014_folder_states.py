"""a folder's SELECT state saved at a MODSEQ: a cold SELECT reads one row and what changed since

Revision ID: mai0014
Revises: mai0013
Create Date: 2026-12-06 07:00:00

The first SELECT of a folder in a process read every message's state row (10,000 rows: ~6 ms of
row building on SQLite alone). folder_states keeps those columns packed at a MODSEQ
(mailboxes.folderstate); the changes since come from the MODSEQ index and the expunge tombstones.
A cache: empty after this migration, filled as folders are selected.
"""
import sqlalchemy as sa
from alembic import op


revision = 'mai0014'
down_revision = 'mai0013'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'folder_states',
        sa.Column('folder_id', ID, sa.ForeignKey('folders.id', ondelete='CASCADE'), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
        sa.Column('modseq', sa.BigInteger(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('uids', sa.LargeBinary(), nullable=False),
        sa.Column('modseqs', sa.LargeBinary(), nullable=False),
        sa.Column('flags', sa.LargeBinary(), nullable=False),
        sa.Column('keywords', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('folder_id'),
        if_not_exists=True,  # a database stamped back (tests) has it
    )


def downgrade() -> None:
    op.drop_table('folder_states', if_exists=True)
