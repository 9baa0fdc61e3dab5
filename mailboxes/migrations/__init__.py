"""Alembic migrations for the two schemas: the directory (central) and the mail tables (every partition)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, table, column, select
from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent
# Each schema has its own script directory and its own version table, so the
# central database (both schemas) and a partition (mail only) upgrade alike.
SCHEMAS = {"directory": "alembic_version_directory", "mail": "alembic_version_mail"}


def alembic_config(schema: str, connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / schema))
    cfg.attributes["schema"] = schema
    cfg.attributes["version_table"] = SCHEMAS[schema]
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, schema: str, *, chain: bool = False) -> None:
    """Bring `schema` in the database behind `connection` to the newest revision.

    A database that has none of the schema's tables yet is built in one step from the
    declared tables (plus the full-text tables the migrations add by hand) and stamped
    with the newest revision, as Alembic's cookbook does: running every revision on an
    empty database rebuilt tables that held nothing and cost every new partition (and
    every test) a third of a second. `chain=True` runs the revisions one by one anyway;
    tests/store/test_migrations.py builds both ways and checks they agree.
    """
    have = set(inspect(connection).get_table_names())
    if not chain and _at_head(connection, schema, have):
        return  # the usual case when a server or a test opens a database: nothing to load or run
    if not chain and _empty(schema, have):
        _metadata(schema).create_all(connection)
        for stmt in _extra_ddl(schema, connection.dialect.name):
            connection.exec_driver_sql(stmt)
        _seed(schema, connection)
        MigrationContext.configure(connection, opts={"version_table": SCHEMAS[schema]}).stamp(_script(schema), "head")
        return
    command.upgrade(alembic_config(schema, connection), "head")


@functools.cache
def _script(schema: str) -> ScriptDirectory:
    """The schema's revisions, read once per process (reading them compiled every revision file: 40-90 ms
    on each open of a database, which a process that opens partitions or a test suite did thousands of times)."""
    return ScriptDirectory.from_config(alembic_config(schema))


def at_head(connection: Connection, schema: str) -> bool:
    """Whether `schema` in this database is at its newest revision(s): nothing for `upgrade` to do."""
    return _at_head(connection, schema, set(inspect(connection).get_table_names()))


def _at_head(connection: Connection, schema: str, have: set[str]) -> bool:
    """Whether the database's version table names exactly the newest revision(s) of `schema`."""
    name = SCHEMAS[schema]
    if name not in have:
        return False
    stamped = set(connection.execute(select(column("version_num")).select_from(table(name))).scalars())
    return stamped == set(_script(schema).get_heads())


def _metadata(schema: str):
    from mailboxes.schema import directory_metadata, mail_metadata

    return directory_metadata if schema == "directory" else mail_metadata


def _extra_ddl(schema: str, dialect: str) -> list[str]:
    """What the mail revisions create outside the declared tables: the two full-text indexes."""
    if schema != "mail":
        return []
    from mailboxes import search, substring

    return search.index_ddl(dialect) + substring.ddl(dialect)


def _seed(schema: str, connection: Connection) -> None:
    """The rows the revisions insert: the UIDVALIDITY counter (mai0002), so that the first concurrent
    folder creations update one row instead of each inserting it (on PostgreSQL all but one failed)."""
    if schema == "mail":
        from mailboxes.identity import UIDVALIDITY
        from mailboxes.schema import mail_counters

        connection.execute(mail_counters.insert().values(name=UIDVALIDITY, value=0))


def _empty(schema: str, have: set[str]) -> bool:
    return SCHEMAS[schema] not in have and not (have & set(_metadata(schema).tables))


def run_env() -> None:
    """The body of each script directory's env.py: migrate on the connection handed over."""
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


def rebuild_sqlite_ids(tables: tuple[str, ...], *, never_reused: bool = True) -> None:
    """Inside a revision: rebuild ``tables`` on SQLite so their ids are AUTOINCREMENT (never handed out twice).

    SQLite decides this only in CREATE TABLE, so each table is copied into a new one (Alembic's
    batch "recreate", which keeps columns, keys and indexes). Foreign keys are off while
    migrating (Database.migrating). PostgreSQL sequences never reuse an id: nothing to do.
    """
    from alembic import op

    if op.get_bind().dialect.name != "sqlite":
        return
    for name in tables:
        with op.batch_alter_table(name, recreate="always", table_kwargs={"sqlite_autoincrement": never_reused}):
            pass
