"""Year archives: move a closed year's mail to a per-year database, shown as Archive/<year>/<folder>.

The move spans two databases, so it is made safe by idempotency rather than
by one transaction. In batches, per folder:
  1. In the archive database, in one transaction: append the batch to
     Archive/<year>/<folder> and record (source partition, source message id)
     in archive_imports. Messages already recorded are skipped.
  2. In the source database, in one transaction: expunge the batch (with
     tombstones, so IMAP clients learn of it), but only messages whose import
     is recorded in the archive.
An interruption between 1 and 2 leaves a message in both places for a while;
a rerun skips its copy (recorded) and finishes its removal. Nothing is lost
and nothing is duplicated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, delete, insert, select, update

from . import cleanup
from . import schema as t
from .blobs import put_many
from .changes import FolderChanged
from .errors import InvalidInput, NotFound
from .identity import next_uidvalidity
from .ingest import prepare_stored
from .model import Account, FolderRef
from .store import Store, _aware, to_utc

BATCH = 200


@dataclass(frozen=True)
class ArchiveReport:
    accounts: int
    folders: int
    moved: int


async def archive_year(store: Store, year: int, *, accounts: list[Account] | None = None,
                       progress: Callable[[int], None] | None = None,
                       stop_after: int | None = None) -> ArchiveReport:
    """Move every message with an internal date in `year` out of home partitions.

    `stop_after` (tests) stops after that many batches, simulating an interruption
    between the two steps of a batch.
    """
    if not store.router.year_mode:
        raise InvalidInput("year archives need [storage] mode = \"year\" or \"hybrid\"")
    now_year = datetime.now(timezone.utc).year
    if not 1970 <= year < now_year:
        raise InvalidInput(f"only a closed year can be archived (1970 to {now_year - 1})")
    start = datetime(year, 1, 1, tzinfo=timezone.utc)
    end = datetime(year + 1, 1, 1, tzinfo=timezone.utc)
    accounts = accounts if accounts is not None else await store.directory.list_accounts()
    moved = batches = 0
    touched: set[tuple[str, int]] = set()
    for acct in accounts:
        home = store.home(acct)
        src = await store.router.database(home)
        async with src.read() as conn:
            # Folders in creation order (INBOX first), messages in UID order: the batches,
            # and so what an interrupted run leaves behind, are the same on every back-end.
            frows = (await conn.execute(select(t.folders.c.id, t.folders.c.name)
                                        .where(t.folders.c.account_id == acct.id)
                                        .order_by(t.folders.c.id))).all()
        for f in frows:
            left = None if stop_after is None else stop_after - batches
            n, b = await archive_folder(store, acct, f.id, f.name, year, start, end, progress=progress,
                                        stop_after=left)
            moved += n
            batches += b
            if b:
                touched.add((home, f.id))
            if stop_after is not None and batches >= stop_after:
                return ArchiveReport(len(accounts), len(touched), moved)
    return ArchiveReport(len(accounts), len(touched), moved)


async def archive_folder(store: Store, acct: Account, folder_id: int, folder_name: str, year: int,
                         start: datetime, end: datetime, *, progress: Callable[[int], None] | None = None,
                         stop_after: int | None = None) -> tuple[int, int]:
    """Move one home folder's messages dated in [start, end) (within `year`) to Archive/<year>/<folder>,
    a batch at a time; returns (messages moved, batches copied). Retention's "archive" action uses it too."""
    home = store.home(acct)
    src = await store.router.database(home)
    target_name = store.router.archive_partition(year)
    target = await store.router.database(target_name)
    root = store.router.config.archive_folder
    moved = batches = 0
    located = False
    while True:
        async with src.read() as conn:
            rows = (await conn.execute(select(t.messages, t.blobs.c.parsed, t.blobs.c.data,
                                              t.blobs.c.sha256).join(t.blobs, t.blobs.c.id == t.messages.c.blob_id)
                                       .where(and_(t.messages.c.folder_id == folder_id,
                                                   t.messages.c.internal_date >= start,
                                                   t.messages.c.internal_date < end))
                                       .order_by(t.messages.c.uid).limit(BATCH))).all()
        if not rows:
            break
        if not located:
            async with store.router.central.write() as conn:
                have = (await conn.execute(select(t.mail_locations).where(and_(
                    t.mail_locations.c.account_id == acct.id,
                    t.mail_locations.c.partition == target_name)))).first()
                if have is None:
                    await conn.execute(insert(t.mail_locations).values(account_id=acct.id,
                                                                       partition=target_name))
            located = True
        await _copy_batch(store, target, target_name, home, acct, f"{root}/{year}/{folder_name}", rows)
        store.indexer(target_name).written(len(rows))  # their bodies wait in blob_index_pending
        batches += 1
        if stop_after is not None and batches >= stop_after:
            return moved, batches
        n = await _remove_batch(store, src, home, target, folder_id, rows)
        moved += n
        if progress:
            progress(n)
    return moved, batches


async def _copy_batch(store: Store, target, target_name: str, home: str, acct: Account, folder_name: str, rows) -> None:
    await store.subscribe(acct, folder_name)  # first (idempotent): a rerun after a cut still subscribes
    async with target.write() as conn:
        fid = (await conn.execute(select(t.folders.c.id).where(and_(
            t.folders.c.account_id == acct.id, t.folders.c.name == folder_name)))).scalar()
        if fid is None:
            res = await conn.execute(insert(t.folders).values(
                account_id=acct.id, name=folder_name, uidvalidity=await next_uidvalidity(conn), uidnext=1,
                highestmodseq=1, special_use=None, created_at=store.clock()))
            fid = res.inserted_primary_key[0]
        done = set((await conn.execute(select(t.archive_imports.c.source_message_id).where(and_(
            t.archive_imports.c.source == home,
            t.archive_imports.c.source_message_id.in_([r.id for r in rows]))))).scalars().all())
        todo = [r for r in rows if r.id not in done]
        if not todo:
            return
        raws = {}
        for r in todo:
            try:
                raws[r.id] = bytes(r.data) if r.data is not None else await store.files(home).read(bytes(r.sha256))
            except NotFound:
                if await store._blob_exists(home, r.blob_id):
                    raise
                continue  # expunged, and its body removed, since the batch was read
        todo = [r for r in todo if r.id in raws]
        if not todo:
            return
        prepared = [prepare_stored(raws[r.id], r.parsed) for r in todo]
        blob_ids = await put_many(conn, prepared, store.files(target_name))
        n = len(todo)
        f = (await conn.execute(update(t.folders).where(t.folders.c.id == fid).values(
            uidnext=t.folders.c.uidnext + n, highestmodseq=t.folders.c.highestmodseq + 1)
            .returning(t.folders.c.uidnext, t.folders.c.highestmodseq))).first()
        first = f.uidnext - n
        await conn.execute(insert(t.messages), [
            {"folder_id": fid, "uid": first + i, "modseq": f.highestmodseq, "flags": r.flags,
             "keywords": r.keywords, "internal_date": to_utc(_aware(r.internal_date)), "size": r.size, "blob_id": bid,
             "track_id": r.track_id}  # recall still finds an archived copy (readstatus.py)
            for i, (r, bid) in enumerate(zip(todo, blob_ids))])
        await conn.execute(insert(t.archive_imports), [
            {"source": home, "source_message_id": r.id, "folder_id": fid, "uid": first + i}
            for i, r in enumerate(todo)])


async def _remove_batch(store: Store, src, home: str, target, folder_id: int, rows) -> int:
    ids = [r.id for r in rows]
    async with target.read() as conn:
        confirmed = set((await conn.execute(select(t.archive_imports.c.source_message_id).where(and_(
            t.archive_imports.c.source == home, t.archive_imports.c.source_message_id.in_(ids))))).scalars().all())
    gone = [r for r in rows if r.id in confirmed]
    if not gone:
        return 0
    async with src.write() as conn:
        f = (await conn.execute(update(t.folders).where(t.folders.c.id == folder_id)
                                .values(highestmodseq=t.folders.c.highestmodseq + 1)
                                .returning(t.folders.c.highestmodseq, t.folders.c.account_id))).first()
        # RETURNING: a message the user expunged meanwhile is neither counted nor tombstoned twice.
        gone = (await conn.execute(delete(t.messages).where(t.messages.c.id.in_([r.id for r in gone]))
                                   .returning(t.messages.c.uid, t.messages.c.size, t.messages.c.blob_id))).all()
        if gone:
            await conn.execute(insert(t.expunged), [{"folder_id": folder_id, "uid": r.uid,
                                                     "modseq": f.highestmodseq} for r in gone])
        # The source partition keeps no body the archive now holds its own copy of.
        released = await cleanup.collect(conn, [r.blob_id for r in gone])
        await store._add_usage(conn, f.account_id, -sum(r.size for r in gone), -len(gone))
        ref = FolderRef(home, folder_id)
        ev = await store._announce(conn, FolderChanged(ref, f.highestmodseq, "expunge"))
    store.bus.publish(ref, ev)
    await cleanup.finish(src, store.files(home), released)
    return len(gone)
