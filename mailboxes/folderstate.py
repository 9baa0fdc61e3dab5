"""A folder's SELECT state saved in the store at a MODSEQ: a cold SELECT reads one row and what changed since, not every message.

Implementation notes
- A process keeps the folders it served in memory (mailserver.imap.cache.FolderSnapshots), but
  the first SELECT of a folder in a process (after a start, in another worker, on another node)
  read every message's state row: for 10,000 messages ~6 ms of row building in the sqlite3
  driver alone, the larger part of a cold SELECT. Dovecot keeps an index file per folder for
  this; here it is a row of `folder_states`: the same columns SELECT reads (UIDs, MODSEQs, flag
  bytes, keywords) packed as arrays, at the folder's HIGHESTMODSEQ when read.
- Loading is that row, decoded by the array module, and the changes after its MODSEQ (rows with a
  higher MODSEQ from ix_messages_modseq, UIDs from the expunge tombstones) folded in by `fold`,
  the fold the in-memory snapshots use: one read transaction, in the reader's thread on SQLite.
- It is a cache, and safe to be behind: every change to a message raises its MODSEQ, every
  expunge leaves a tombstone (kept as long as the folder), so folding the changes since brings
  any saved state to the present. Columns read at MODSEQ m may already hold later changes (the
  folder row is read first); folding those again gives the same result. A state saved under
  another UIDVALIDITY (the folder renamed or re-created) is ignored; the folder's deletion
  deletes it. A saved state never replaces a newer one (several processes may save).
- Saved after a full read of a folder of at least SAVE_MIN messages, or when bringing one up to
  date read more than max(SAVE_MIN, count / 10) changed rows (the IMAP server's in-memory
  snapshots report the changes they fold in too: a client that flags a whole folder leaves a
  current state behind); by a background task of the store, one folder at a time, the newest
  state asked for per folder (`Saver`), encoded in a thread before the write transaction takes the
  store's writer (500,000 messages, a tenth with a keyword: ~100 ms to encode, a 9.4 MB row).
  Smaller folders are read whole: 1,000 rows cost about as
  much as the saved row and its changes. When more than a third of a folder changed since its
  state was saved, the changed rows (found by the MODSEQ index, each a lookup in the table) cost
  more than the whole read (a covering index on SQLite): it reads the folder whole and saves it.
- Measured (select_bench, SQLite, 10,000 messages): the first SELECT of a fresh process 16.3 ->
  8.5 ms, of a folder new to a running process 10.6 -> 4.6 ms (Dovecot: 14.0).
"""

from __future__ import annotations

import array
import asyncio
import bisect
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from . import schema as t
from .model import FolderRef

log = logging.getLogger("postroom.store")

SAVE_MIN = 1000  # folders smaller than this are read whole; larger ones are saved after a full read
STALE_FRACTION = 10  # a saved state is rewritten once more than count / this rows were read beyond it
FULL_READ_FRACTION = 3  # more changed rows than count / this since the saved state: the folder is read whole
_NONE: frozenset[str] = frozenset()
_INSERTS = {"postgresql": pg_insert, "sqlite": sqlite_insert}
_LITTLE = sys.byteorder == "little"


class Columns(NamedTuple):
    """A folder's state as SELECT reads it: parallel columns in UID order, keywords for those that carry any."""

    uids: list[int]
    modseqs: list[int]
    flags: bytes
    kws: dict[int, frozenset[str]]
    keywords: frozenset[str]  # every keyword in use (the FLAGS response)


def fold(cols: Columns, changed: Sequence[Sequence], vanished: Iterable[int]) -> Columns:
    """``cols`` with the changes folded in: ``changed`` rows start (uid, modseq, flags, keywords frozenset).

    MessageMeta tuples qualify. New columns are returned; those of ``cols`` are not changed
    (they may be shared). Folding a change the columns already hold changes nothing.
    """
    uids, modseqs, flags, kws = list(cols.uids), list(cols.modseqs), bytearray(cols.flags), dict(cols.kws)
    gone = set(vanished)
    n = len(uids)
    top = uids[-1] if uids else 0
    added = []
    for m in changed:
        uid = m[0]
        i = bisect.bisect_left(uids, uid)
        if i < n and uids[i] == uid:
            modseqs[i], flags[i] = m[1], m[2] & 0xFF
            if m[3]:
                kws[uid] = m[3]
            else:
                kws.pop(uid, None)
        else:
            added.append(m)
    if gone or any(m[0] <= top for m in added):
        rows = [(u, ms, f) for u, ms, f in zip(uids, modseqs, flags) if u not in gone]
        rows += [(m[0], m[1], m[2] & 0xFF) for m in added if m[0] not in gone]
        rows.sort()
        for u in gone:
            kws.pop(u, None)
        uids, modseqs, fl = (list(col) for col in zip(*rows)) if rows else ([], [], [])
        flags = bytearray(fl)
    else:  # the usual case: new mail after the last known UID
        added.sort(key=lambda m: m[0])
        uids += [m[0] for m in added]
        modseqs += [m[1] for m in added]
        flags += bytes(m[2] & 0xFF for m in added)
    for m in added:
        if m[3] and m[0] not in gone:
            kws[m[0]] = m[3]
    keywords = frozenset().union(*kws.values()) if kws else _NONE
    return Columns(uids, modseqs, bytes(flags), kws, keywords)


# --- reading (inside a read transaction, in the reader's thread on SQLite) -----------------------

_SINCE = {"sqlite": "SELECT uid, modseq, flags, keywords FROM messages WHERE folder_id = ? AND modseq > ? LIMIT ?",
          "postgresql": "SELECT uid, modseq, flags, keywords FROM messages WHERE folder_id = $1 AND modseq > $2"
                        " LIMIT $3"}


class Loaded(NamedTuple):
    cols: Columns
    behind: int  # rows read beyond the saved state (changed and vanished)


Run = Callable[..., Any]  # run(n, fn, *args): fn(*args), a conversion of n rows (listing._runner)


def _here(n: int, fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def load(conn: Connection, folder_id: int, uidvalidity: int, highestmodseq: int,
         fetch: Callable[[str, tuple], list], run: Run = _here) -> Loaded | None:
    """The saved state brought up to ``highestmodseq``; None when there is none usable.

    ``fetch(sql by dialect, args)`` runs a plain statement through the driver (listing._rows' way);
    ``run`` the decoding and folding, which take time in proportion to the folder (off the event loop).
    """
    st = t.folder_states.c
    row = conn.execute(select(st.modseq, st.count, st.uids, st.modseqs, st.flags, st.keywords)
                       .where(st.folder_id == folder_id, st.uidvalidity == uidvalidity)).first()
    if row is None or row.modseq > highestmodseq:
        return None
    # Decoding or folding a saved state costs about a tenth of converting as many rows (10,000: ~0.5 ms).
    cost = row.count // 10
    try:
        cols = run(cost, decode, row.count, bytes(row.uids), bytes(row.modseqs), bytes(row.flags), row.keywords)
    except (ValueError, TypeError, AttributeError) as e:  # damaged: read the folder whole (and save it again)
        log.warning("saved state of folder %d unreadable (%s): reading it whole", folder_id, e)
        return None
    if row.modseq == highestmodseq:
        return Loaded(cols, 0)
    # Past a third of the folder changed, reading it whole is cheaper (the covering index, no lookups).
    most = row.count // FULL_READ_FRACTION
    rows = fetch(_SINCE, (folder_id, row.modseq, most + 1))
    if len(rows) > most:
        return None
    parsed = {kw: frozenset(kw.split()) for kw in {r[3] for r in rows} if kw}  # once per distinct text
    changed = sorted((uid, modseq, flags, parsed[kw] if kw else _NONE) for uid, modseq, flags, kw in rows)
    ex = t.expunged.c
    gone = conn.execute(select(ex.uid).where(ex.folder_id == folder_id, ex.modseq > row.modseq)).scalars().all()
    return Loaded(run(cost + len(changed), fold, cols, changed, gone), len(changed) + len(gone))


def decode(count: int, uids: bytes, modseqs: bytes, flags: bytes, keywords: str) -> Columns:
    u, m = array.array("q"), array.array("q")
    u.frombytes(uids)
    m.frombytes(modseqs)
    if not _LITTLE:
        u.byteswap()
        m.byteswap()
    if not (len(u) == len(m) == len(flags) == count):
        raise ValueError(f"column lengths {len(u)}/{len(m)}/{len(flags)} for {count} messages")
    texts = json.loads(keywords)
    if not isinstance(texts, dict):
        raise ValueError("keywords are not a JSON object")
    parsed = {text: frozenset(text.split()) for text in set(texts.values())}
    kws = {int(uid): parsed[text] for uid, text in texts.items()}
    return Columns(u.tolist(), m.tolist(), flags, kws, frozenset().union(*parsed.values()) if parsed else _NONE)


class Encoded(NamedTuple):
    """Columns as folder_states stores them (encoded outside the write transaction: a large folder's
    arrays and keywords take a while, and the transaction holds the store's writer)."""

    count: int
    uids: bytes
    modseqs: bytes
    flags: bytes
    keywords: str


def encode(cols: Columns) -> Encoded:
    u, m = array.array("q", cols.uids), array.array("q", cols.modseqs)
    if not _LITTLE:
        u.byteswap()
        m.byteswap()
    kws = json.dumps({str(uid): " ".join(sorted(k)) for uid, k in cols.kws.items()}, separators=(",", ":"))
    return Encoded(len(cols.uids), u.tobytes(), m.tobytes(), bytes(cols.flags), kws)


def wants_saving(count: int, behind: int) -> bool:
    """Whether a state read ``behind`` rows beyond what was saved (all of them: nothing saved) is worth saving."""
    return count >= SAVE_MIN and behind >= max(SAVE_MIN, count // STALE_FRACTION)


# --- saving ----------------------------------------------------------------------------------------

def save_sync(conn: Connection, folder_id: int, uidvalidity: int, modseq: int, enc: Encoded) -> bool:
    """Write ``enc`` as the folder's state at ``modseq`` unless the folder changed generation or a newer one is saved."""
    f = t.folders.c
    if conn.execute(select(f.id).where(f.id == folder_id, f.uidvalidity == uidvalidity)).first() is None:
        return False  # deleted or re-created meanwhile
    st = t.folder_states.c
    old = conn.execute(select(st.modseq, st.uidvalidity).where(st.folder_id == folder_id)).first()
    if old is not None and old.uidvalidity == uidvalidity and old.modseq > modseq:
        return False
    row = {"uidvalidity": uidvalidity, "modseq": modseq, **enc._asdict()}
    # An upsert, so that two nodes saving one folder at once on PostgreSQL do not collide on the key;
    # the newer state (or the one under the folder's present UIDVALIDITY) stays.
    ins = _INSERTS[conn.dialect.name](t.folder_states).values(folder_id=folder_id, **row)
    ex = ins.excluded
    done = conn.execute(ins.on_conflict_do_update(index_elements=[st.folder_id], set_=row,
                                                  where=or_(st.uidvalidity != ex.uidvalidity, st.modseq <= ex.modseq)))
    return done.rowcount > 0


class Saver:
    """Saves folder states in the background: one at a time, the newest asked for per folder."""

    def __init__(self, save: Callable[[FolderRef, int, int, Columns], Awaitable[bool]]) -> None:
        self._save = save  # (ref, uidvalidity, modseq, cols) -> whether it was written
        self._pending: dict[FolderRef, tuple[int, int, Columns]] = {}
        self._task: asyncio.Task | None = None
        self.saved = 0  # states written by this process (for tests and figures)

    def want(self, ref: FolderRef, uidvalidity: int, modseq: int, cols: Columns) -> None:
        old = self._pending.get(ref)
        if old is None or old[1] < modseq:
            self._pending[ref] = (uidvalidity, modseq, cols)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="folder-state saver")

    async def _run(self) -> None:
        while self._pending:
            ref = next(iter(self._pending))
            uidvalidity, modseq, cols = self._pending.pop(ref)
            try:
                if await self._save(ref, uidvalidity, modseq, cols):
                    self.saved += 1
            except Exception as e:  # noqa: BLE001 - a cache: a failed save is logged, never raised
                log.warning("saving the state of folder %s failed: %s", ref, e)

    async def idle(self) -> None:
        """Wait until nothing is pending (tests, shutdown of a benchmark's store)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Drop what waits (a cache: it is read whole next time); let a save under way finish, as the
        database closes next (a save in the writer's thread is not stopped by cancelling its waiter)."""
        self._pending.clear()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
