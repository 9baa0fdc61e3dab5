"""Alembic environment of the directory schema (shared body in mailboxes.migrations)."""

from mailboxes.migrations import run_env

run_env()
