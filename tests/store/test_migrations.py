"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import pytest

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
            or (metadata is mail_metadata and name in directory_metadata.tables))),
        "include_object": lambda obj, name, type_, reflected, compare_to: _built_here(obj, type_, reflected,
                                                                                       sync_conn.dialect.name)})
    return compare_metadata(ctx, metadata)


def _built_here(obj, type_, reflected: bool, dialect: str) -> bool:
    """A declared index made for one dialect only (``Index.ddl_if(dialect=...)``) is expected there only."""
    cond = getattr(obj, "_ddl_if", None) if type_ == "index" and not reflected else None
    return cond is None or cond.dialect in (None, dialect)


async def test_migrated_schema_matches_the_declared_one(empty_storage_url):
    mb = await open_mailboxes(StorageConfig(url=empty_storage_url), hasher=FAST_HASHER)
    try:
        async with mb.router.central.read() as conn:
            for md, table in ((directory_metadata, SCHEMAS["directory"]), (mail_metadata, SCHEMAS["mail"])):
                diff = await conn.run_sync(_diff, md, table)
                assert diff == [], diff
        # Opening again runs the migrations again: nothing to do, nothing breaks.
    finally:
        await mb.close()
    mb = await open_mailboxes(StorageConfig(url=empty_storage_url), hasher=FAST_HASHER)
    await mb.close()


def _objects(sync_conn) -> dict[str, set]:
    """Every table (full-text ones included) with its columns and indexes, as the database reports them."""
    from sqlalchemy import inspect

    insp = inspect(sync_conn)
    out = {}
    for name in insp.get_table_names():
        if name.endswith(("_data", "_idx", "_content", "_docsize", "_config")) and name.startswith("blob_"):
            continue  # FTS5's shadow tables follow their virtual table
        cols = {(c["name"], str(c["type"]).split("(")[0], c["nullable"]) for c in insp.get_columns(name)}
        idx = {(i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(name)}
        out[name] = (cols, idx)
    return out


async def _build(url: str, chain: bool):
    from mailboxes import migrations
    from mailboxes.db import open_database

    db = open_database(url)
    try:
        async with db.migrating() as conn:
            for schema in ("directory", "mail"):
                await conn.run_sync(lambda c, s=schema: migrations.upgrade(c, s, chain=chain))
        async with db.read() as conn:
            objects = await conn.run_sync(_objects)
            diffs = [await conn.run_sync(_diff, md, table)
                     for md, table in ((directory_metadata, SCHEMAS["directory"]), (mail_metadata, SCHEMAS["mail"]))]
            versions = [(await conn.exec_driver_sql(f"SELECT version_num FROM {t}")).scalar() for t in SCHEMAS.values()]
        return objects, diffs, versions
    finally:
        await db.dispose()


@pytest.mark.slow
async def test_a_new_database_built_in_one_step_equals_one_built_by_every_revision(empty_storage_url, request, tmp_path):
    """A new database skips the revision chain (create + stamp); the chain must give the same schema."""
    import uuid

    import asyncpg

    if empty_storage_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path}/one-step.db"
    else:
        srv = request.getfixturevalue("pg")
        name = "t_" + uuid.uuid4().hex[:12]
        admin = await asyncpg.connect(host="127.0.0.1", port=srv.port, user="postgres", database="postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        other = srv.url(name)
    chained, chain_diffs, chain_versions = await _build(empty_storage_url, chain=True)
    direct, direct_diffs, direct_versions = await _build(other, chain=False)
    assert chain_diffs == [[], []] and direct_diffs == [[], []]
    assert chain_versions == direct_versions and None not in direct_versions
    assert chained == direct
    assert {"blob_fts" if empty_storage_url.startswith("sqlite") else "blob_search", "blob_text"} <= set(direct)


async def test_a_database_built_without_the_uidvalidity_counter_row_gets_it(empty_storage_url):
    """One-step builds before 2c6a15d lacked the counter row mai0002 seeds (concurrent first provisions then
    failed on PostgreSQL); mai0010 puts it back above every UIDVALIDITY handed out."""
    from alembic import command

    from mailboxes import migrations
    from mailboxes.db import open_database

    db = open_database(empty_storage_url)
    try:
        async with db.migrating() as conn:
            for schema in ("directory", "mail"):
                await conn.run_sync(lambda c, s=schema: migrations.upgrade(c, s))
            await conn.exec_driver_sql("DELETE FROM mail_counters")
            await conn.exec_driver_sql(
                "INSERT INTO folders (account_id, name, uidvalidity, uidnext, highestmodseq, created_at) "
                "VALUES (1, 'Old', 4000000000, 1, 1, CURRENT_TIMESTAMP)")
            await conn.run_sync(lambda c: command.stamp(migrations.alembic_config("mail", c), "mai0009"))
            await conn.run_sync(lambda c: migrations.upgrade(c, "mail"))
        async with db.read() as conn:
            rows = (await conn.exec_driver_sql("SELECT name, value FROM mail_counters")).all()
        assert [tuple(r) for r in rows] == [("uidvalidity", 4000000000)]
    finally:
        await db.dispose()
