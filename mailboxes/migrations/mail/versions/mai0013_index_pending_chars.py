"""a pending-index row counts its characters: an indexing batch is sized by its text

Revision ID: mai0013
Revises: mai0012
Create Date: 2026-12-05 23:00:00

A batch of the search indexer took 200 rows whatever their size, and a row kept its body's
whole text extract: a burst of large text messages could hold hundreds of MB in one batch.
Rows now keep only what the indexes read and count it in `chars`; a batch takes at most
indexer.BATCH_CHARS. The column comes right after the key, so choosing a batch reads no text
(on SQLite a column after the texts sits on their overflow pages): the table is rebuilt, the
rows it holds (usually none) carried over with their counts.
"""
import sqlalchemy as sa
from alembic import op


revision = 'mai0013'
down_revision = 'mai0012'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TEXTS = ('subject', 'addrs', 'head', 'body')


def _create(name: str, chars: bool) -> None:
    op.create_table(
        name,
        sa.Column('blob_id', ID, sa.ForeignKey('blobs.id', ondelete='CASCADE'), nullable=False),
        *([sa.Column('chars', sa.Integer(), nullable=False)] if chars else []),
        *[sa.Column(c, sa.Text(), nullable=False) for c in TEXTS],
        sa.PrimaryKeyConstraint('blob_id'),
    )


def _rebuild(chars: bool) -> None:
    _create('blob_index_pending_new', chars)
    counted = ' + '.join(f'length({c})' for c in TEXTS)
    cols = ', '.join(TEXTS)
    op.execute(f'INSERT INTO blob_index_pending_new (blob_id, {"chars, " if chars else ""}{cols})'
               f' SELECT blob_id, {counted + ", " if chars else ""}{cols} FROM blob_index_pending')
    op.drop_table('blob_index_pending')
    op.rename_table('blob_index_pending_new', 'blob_index_pending')
    if op.get_bind().dialect.name == 'postgresql':  # keep the usual name of the key's constraint and index
        op.execute('ALTER TABLE blob_index_pending RENAME CONSTRAINT blob_index_pending_new_pkey'
                   ' TO blob_index_pending_pkey')


def upgrade() -> None:
    _rebuild(chars=True)


def downgrade() -> None:
    # Index what is pending with today's code first: mai0012's downgrade then finds nothing to index.
    from mailboxes.indexer import drain_sync
    drain_sync(op.get_bind())
    _rebuild(chars=False)
