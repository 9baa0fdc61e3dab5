"""search indexing out of the delivery's path: a table of bodies waiting to be indexed

Revision ID: mai0012
Revises: mai0011
Create Date: 2026-12-05 19:30:00

A delivery wrote each new body's rows into both search indexes (the word index and the
substring index) before its 250: on SQLite about a quarter of the writer's time a message.
It now writes the body's texts into blob_index_pending, and mailboxes/indexer.py moves them
into the indexes when the store is idle; every search first indexes what is pending.
Bodies stored before this revision are indexed already: the table starts empty.
"""
import sqlalchemy as sa
from alembic import op


revision = 'mai0012'
down_revision = 'mai0011'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'blob_index_pending',
        sa.Column('blob_id', ID, sa.ForeignKey('blobs.id', ondelete='CASCADE'), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        sa.Column('addrs', sa.Text(), nullable=False),
        sa.Column('head', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('blob_id'),
        if_not_exists=True,
    )


def downgrade() -> None:
    # Index what is still pending first, or those bodies would never be found by a search.
    # (mai0013's downgrade has done so with the code that knows its columns; this is for a database at mai0012.)
    from mailboxes.indexer import drain_sync
    drain_sync(op.get_bind())
    op.drop_table('blob_index_pending')
