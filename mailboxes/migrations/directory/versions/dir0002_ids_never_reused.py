"""ids never reused (SQLite AUTOINCREMENT)

Revision ID: dir0002
Revises: dir0001
Create Date: 2026-12-04 06:00:00

Account, app password, group, domain and queue ids reach clients, caches and other tables:
none may be handed out again after a delete (issue 7).
"""
from mailboxes.migrations import rebuild_sqlite_ids


revision = 'dir0002'
down_revision = 'dir0001'
branch_labels = None
depends_on = None

TABLES = ('domains', 'departments', 'accounts', 'app_passwords', 'aliases', 'groups', 'routes', 'audit_log',
          'queue_messages', 'queue_recipients')


def upgrade() -> None:
    rebuild_sqlite_ids(TABLES)


def downgrade() -> None:
    rebuild_sqlite_ids(TABLES, never_reused=False)
