"""substring search: a trigram index of header and body text; both indexes rebuilt

Revision ID: mai0004
Revises: mai0003
Create Date: 2026-12-04 06:45:00

RFC 3501 §6.4.4 SEARCH TEXT/BODY match substrings (issue 8): the new blob_text table
(SQLite FTS5 trigram, PostgreSQL pg_trgm) holds every header field and the body text.
The word index's body column no longer carries the subject and addresses (BODY is the
body only), so every stored blob is indexed again here; blobs kept in a blob directory
are reached by `postroom reindex` (mailboxes/reindex.py).
"""
from alembic import op

from mailboxes import substring
from mailboxes.reindex import reindex_stored


revision = 'mai0004'
down_revision = 'mai0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for stmt in substring.ddl(op.get_bind().dialect.name):
        op.execute(stmt)
    reindex_stored(op.get_bind())


def downgrade() -> None:
    for stmt in substring.drop_ddl(op.get_bind().dialect.name):
        op.execute(stmt)
