"""One page of a folder's search hits and their count, answered by the word index inside the database.

Implementation notes
- The hit set never reaches Python: the count is one COUNT over the folder's rows whose
  blob the word index names, and the page walks ix_messages_date (folder, date, uid) in
  order, keeping rows whose blob is in the matched set, until it has `limit` of them.
  A search matching 5,000 of 10,000 messages therefore moves 50 rows, not 5,000 UIDs.
- The word index (search.py) matches Chinese runs as substrings (bigram phrases) and
  English words by prefix, in subject, addresses and body; a query with no indexable
  terms gives None and the caller falls back to the substring index.
"""

from __future__ import annotations

from sqlalchemy import column, func, literal_column, select, text

from . import identity
from . import schema as t
from .db import Database
from .messagewrite import META_COLS, meta
from .model import FolderRef, MessageMeta
from .search import blob_match_sql, folder_blob


async def search_page(db: Database, ref: FolderRef, query: str, *, offset: int, limit: int,
                      newest_first: bool = True) -> tuple[int, list[MessageMeta]] | None:
    """(how many messages of the folder match `query`, one page of them by date), None: no indexable terms."""
    q = blob_match_sql(db.dialect, None, query)
    if q is None:
        return None
    sql, params = q
    c = t.messages.c
    matched = text(sql).bindparams(**params).columns(column("id"))
    where = (c.folder_id == ref.id) & literal_column(folder_blob(db.dialect, "messages.")).in_(matched)
    order = (c.internal_date.desc(), c.uid.desc()) if newest_first else (c.internal_date, c.uid)
    async with db.read() as conn:
        identity.check(ref, (await conn.execute(select(t.folders).where(t.folders.c.id == ref.id))).first())
        count = (await conn.execute(select(func.count()).select_from(t.messages).where(where))).scalar_one()
        rows = (await conn.execute(select(*META_COLS).where(where).order_by(*order)
                                   .offset(max(0, offset)).limit(max(0, limit)))).all()
    return count, [meta(r) for r in rows]
