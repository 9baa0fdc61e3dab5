"""Alembic environment of the mail schema (shared body in mailboxes.migrations)."""

from mailboxes.migrations import run_env

run_env()
