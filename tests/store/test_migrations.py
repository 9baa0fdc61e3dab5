"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailboxes.migrations import SCHEMAS
from mailboxes.partitions import StorageConfig
from mailboxes.schema import directory_metadata, mail_metadata
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER

FTS_TABLES = {"blob_fts", "blob_search", "blob_text"} | {
    f"{t}_{s}" for t in ("blob_fts", "blob_text") for s in ("data", "idx", "content", "docsize", "config")}


def _diff(sync_conn, metadata, version_table):
    ctx = MigrationContext.configure(sync_conn, opts={
        "version_table": version_table,
        "include_name": lambda name, type_, parent: not (type_ == "table" and (
            name in FTS_TABLES or name.startswith("alembic_version")
            or (metadata is directory_metadata and name in mail_metadata.tables)
            or (metadata is mail_metadata and name in directory_metadata.tables)))})
    return compare_metadata(ctx, metadata)


async def test_migrated_schema_matches_the_declared_one(storage_url):
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        async with mb.router.central.read() as conn:
            for md, table in ((directory_metadata, SCHEMAS["directory"]), (mail_metadata, SCHEMAS["mail"])):
                diff = await conn.run_sync(_diff, md, table)
                assert diff == [], diff
        # Opening again runs the migrations again: nothing to do, nothing breaks.
    finally:
        await mb.close()
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    await mb.close()
