"""ids never reused (SQLite AUTOINCREMENT) and the UIDVALIDITY counter

Revision ID: mai0002
Revises: mai0001
Create Date: 2026-12-04 06:00:00

Folder, message and blob ids reach clients and caches: a reused one let a folder created
later by another account take over state kept for a deleted one (issue 7). The counter
keeps UIDVALIDITY strictly increasing (RFC 3501 §2.3.1.1), seeded above every folder's.
"""
from alembic import op
import sqlalchemy as sa

from mailboxes.migrations import rebuild_sqlite_ids


revision = 'mai0002'
down_revision = 'mai0001'
branch_labels = None
depends_on = None

TABLES = ('blobs', 'folders', 'messages')


def upgrade() -> None:
    counters = op.create_table('mail_counters',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    top = op.get_bind().execute(sa.text('SELECT max(uidvalidity) FROM folders')).scalar() or 0
    op.bulk_insert(counters, [{'name': 'uidvalidity', 'value': int(top)}])
    rebuild_sqlite_ids(TABLES)


def downgrade() -> None:
    rebuild_sqlite_ids(TABLES, never_reused=False)
    op.drop_table('mail_counters')
