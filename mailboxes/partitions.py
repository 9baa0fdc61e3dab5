"""The partition router: which database holds an account's mail (shared, department, year, hybrid)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from . import migrations
from . import schema as t
from .db import Database, normalise_url, open_database

MODES = ("shared", "department", "year", "hybrid")
MAIN = "main"
ARCHIVE_PREFIX = "archive-"
DEPARTMENT_PREFIX = "dept-"
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class StorageConfig:
    """What the store needs to know from `[storage]` (built by mailserver.config)."""

    url: str
    mode: str = "shared"
    departments: tuple[str, ...] = ()  # department codes with a database of their own
    # Template for partition URLs; "{name}" is replaced by e.g. "dept-finance", "archive-2025".
    # Empty: derived from `url` (a sibling SQLite file, or a sibling PostgreSQL database).
    partition_url: str = ""
    blob_dir: str = ""  # empty: blobs in the database
    archive_folder: str = "Archive"  # client-visible root of year archives

    def partition_url_for(self, name: str) -> str:
        if self.partition_url:
            return self.partition_url.replace("{name}", name)
        u = make_url(normalise_url(self.url))
        if u.drivername.startswith("sqlite"):
            db = u.database or ""
            stem = db[:-3] if db.endswith(".db") else db
            return u.set(database=f"{stem}-{name}.db").render_as_string(hide_password=False)
        return u.set(database=f"{u.database}_{name.replace('-', '_')}").render_as_string(hide_password=False)


def validate_partition_name(name: str) -> str:
    if not _NAME_OK.match(name):
        raise ValueError(f"invalid partition name {name!r}")
    return name


@dataclass
class Router:
    """Maps accounts and archive years to databases and opens them on first use."""

    config: StorageConfig
    central: Database = field(init=False)
    _open: dict[str, Database] = field(default_factory=dict, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    on_open: list = field(default_factory=list, init=False)  # callbacks (name, Database) on first open

    def __post_init__(self) -> None:
        if self.config.mode not in MODES:
            raise ValueError(f"storage.mode must be one of {', '.join(MODES)}")
        self.central = open_database(self.config.url)
        self._open[MAIN] = self.central

    @property
    def department_mode(self) -> bool:
        return self.config.mode in ("department", "hybrid")

    @property
    def year_mode(self) -> bool:
        return self.config.mode in ("year", "hybrid")

    def home_partition(self, department_code: str | None) -> str:
        if self.department_mode and department_code and department_code in self.config.departments:
            return DEPARTMENT_PREFIX + department_code
        return MAIN

    @staticmethod
    def archive_partition(year: int) -> str:
        return f"{ARCHIVE_PREFIX}{year}"

    async def database(self, name: str) -> Database:
        db = self._open.get(name)
        if db is not None:
            return db
        async with self._lock:
            db = self._open.get(name)
            if db is None:
                validate_partition_name(name)
                url = self.config.partition_url_for(name)
                await _ensure_pg_database(self.central, url)
                db = open_database(url)
                await create_mail_schema(db)
                await db.warm()
                self._open[name] = db
                for callback in self.on_open:
                    callback(name, db)
        return db

    def opened(self) -> dict[str, Database]:
        return dict(self._open)

    async def known(self) -> set[str]:
        """Every partition this installation has: main, the configured departments, those holding mail."""
        names = {MAIN, *self._open}
        if self.department_mode:
            names.update(self.home_partition(code) for code in self.config.departments)
        async with self.central.read() as conn:
            names.update((await conn.execute(select(t.mail_locations.c.partition).distinct())).scalars().all())
        return names

    async def close(self) -> None:
        for db in self._open.values():
            await db.dispose()
        self._open.clear()


async def create_mail_schema(db: Database) -> None:
    """Create or upgrade a partition's mail tables (Alembic)."""
    await _migrate(db, ("mail",))


async def create_central_schema(db: Database) -> None:
    """Create or upgrade the central database: the directory and the mail tables (Alembic)."""
    await _migrate(db, ("directory", "mail"))


async def _migrate(db: Database, schemas: tuple[str, ...]) -> None:
    """Bring these schemas to their newest revisions. A database already there (every open after the
    first) is seen with one read; the migration's own engine and connection (10 ms an open) are for
    the others."""
    if await db.read_sync(lambda conn: all(migrations.at_head(conn, schema) for schema in schemas)):
        return
    async with db.migrating() as conn:
        for schema in schemas:
            await conn.run_sync(migrations.upgrade, schema)


async def _ensure_pg_database(central: Database, url: str) -> None:
    """Create a PostgreSQL partition database next to the central one if it is missing."""
    if central.dialect != "postgresql":
        return
    name = make_url(normalise_url(url)).database
    async with central.writer.connect() as conn:
        found = (await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})).first()
        if found:
            return
        await conn.commit()
        ac = await conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            await ac.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # a concurrent creator won the race
            if "already exists" not in str(exc):
                raise
