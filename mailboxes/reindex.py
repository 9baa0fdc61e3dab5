"""Rebuild both search indexes (words and substrings) of stored blobs from their raw bytes.

Run by migration mai0004 over the blobs kept in the database, and by `postroom reindex`
(Store.reindex_search) for any partition, including blobs kept in a blob directory:
mail stored before the substring index existed becomes searchable the new way.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, select, text
from sqlalchemy.engine import Connection

from . import schema as t
from . import indexer, search, substring
from .ingest import prepare

REINDEX_BATCH = 200  # blobs parsed and rewritten per statement batch


def _statements(dialect: str) -> list:
    out = []
    for mod in (search, substring):
        out.append(text(mod.delete_sql(dialect)).bindparams(bindparam("ids", expanding=True)))
    return out


def rewrite(conn: Connection, items: list[tuple[int, bytes]]) -> None:
    """Replace the index rows of (blob_id, raw) pairs (a sync connection: migrations, run_sync)."""
    if not items:
        return
    dialect = conn.dialect.name
    prepared = [(bid, prepare(raw)) for bid, raw in items]
    ids = [bid for bid, _ in items]
    for stmt in _statements(dialect):
        conn.execute(stmt, {"ids": ids})
    conn.execute(text(search.insert_sql(dialect)),
                 search.row_params([(bid, p.subject, p.addrs, p.body_text) for bid, p in prepared]))
    conn.execute(text(substring.insert_sql(dialect)),
                 substring.row_params([(bid, p.head_text, p.body_text) for bid, p in prepared]))


def _rewrite_at_head(conn: Connection, items: list[tuple[int, bytes]]) -> None:
    """`rewrite` on a database at its newest revision: a body still pending is indexed here, not again later."""
    indexer.drop_pending(conn, [bid for bid, _ in items])
    rewrite(conn, items)


def reindex_stored(conn: Connection, progress: Callable[[int], None] | None = None) -> int:
    """Reindex every blob whose bytes are in the database; returns how many (blob-directory ones are skipped)."""
    done, last = 0, 0
    while True:
        rows = conn.execute(select(t.blobs.c.id, t.blobs.c.data).where(
            t.blobs.c.id > last, t.blobs.c.data.is_not(None)).order_by(t.blobs.c.id).limit(REINDEX_BATCH)).all()
        if not rows:
            return done
        rewrite(conn, [(r.id, bytes(r.data)) for r in rows])
        done += len(rows)
        last = rows[-1].id
        if progress is not None:
            progress(done)


async def reindex_partition(store, partition: str, progress: Callable[[int], None] | None = None) -> int:
    """Reindex every blob of a partition, those in a blob directory too (`postroom reindex`); returns how many."""
    db = await store.router.database(partition)
    done, last = 0, 0
    while True:
        async with db.read() as conn:
            rows = (await conn.execute(select(t.blobs.c.id, t.blobs.c.sha256, t.blobs.c.data).where(
                t.blobs.c.id > last).order_by(t.blobs.c.id).limit(REINDEX_BATCH))).all()
        if not rows:
            return done
        files = store.files(partition)  # the partition's own subdirectory (cleanup.py layout)
        items = [(r.id, bytes(r.data) if r.data is not None else await files.read(bytes(r.sha256)))
                 for r in rows]
        async with db.write() as conn:
            await conn.run_sync(_rewrite_at_head, items)
        done += len(rows)
        last = rows[-1].id
        if progress is not None:
            progress(len(rows))
