"""Alembic environment: runs on the connection the store hands over (see mailboxes.migrations)."""

from __future__ import annotations

from alembic import context

from mailboxes.schema import directory_metadata, mail_metadata

cfg = context.config
metadata = directory_metadata if cfg.attributes["schema"] == "directory" else mail_metadata
connection = cfg.attributes.get("connection")
if connection is None:
    raise RuntimeError("migrations run through mailboxes.migrations.upgrade(), on a live connection")
context.configure(connection=connection, target_metadata=metadata,
                  version_table=cfg.attributes["version_table"], render_as_batch=True)
context.run_migrations()
