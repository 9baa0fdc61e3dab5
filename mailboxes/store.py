"""The async mail store API: folders, append and delivery (group commit), flags, expunge, copy, changes, search.

Implementation notes (invariants):
- Commit first, then broadcast: bus events are published only after the
  transaction that made the change has committed.
- A folder's UIDNEXT and HIGHESTMODSEQ are advanced by an UPDATE of the
  folder row inside the transaction that adds or changes messages, so
  concurrent writers (several nodes on PostgreSQL) serialise on that row.
- Every change to a message gets a new MODSEQ; one command's changes to one
  folder share it (RFC 7162 §3.1 allows this).
- No network I/O happens while a transaction is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, case, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from . import cleanup, folderstate, identity, pgbus, provisioning
from . import schema as t
from .blobs import BlobDirectory, PreparedMessage, read_raw, read_raw_range, read_raw_range_sqlite
from .changes import ChangeBus, FolderChanged
from .db import Database
from .deliverywrite import Batch, Delivery, FolderCache, StaleCache, lone_cached, one_pg, quota_error, write_batch
from .directory import Directory
from .errors import AlreadyExists, InvalidInput, NotFound, OverQuota, UnderHold
from .holds import Holds, LegalHold, held_uids
from .groupcommit import GroupCommitter
from .indexer import Indexer
from .listing import FolderChanges, Listing, StateListing, read_changes, read_facts, read_listing, read_state
from .messagewrite import META_COLS, HoldsActive, meta as _meta, remove_sync, store_flags_sync
from .messagewrite import uid_condition, uid_conditions
from .messagewrite import aware as _aware  # noqa: F401 - archive.py imports it from here
from .messagewrite import uid_ranges as _uid_ranges
from .model import (
    Account, AppendResult, Changes, Flag, Folder, FolderRef, FolderStatus,
    FixedFacts, MessageMeta, Quota,
)
from .partitions import Router
from .provisioning import INBOX
from .readstatus import ReadStatus
from .subscriptions import move_with_rename as move_subscriptions

log = logging.getLogger("postroom.store")

DELIMITER = "/"
MAX_FOLDER_NAME = 1000
MAX_FOLDER_DEPTH = 32
COPY_CHUNK = 2000  # message rows inserted per statement by COPY/MOVE
COPY_BLOB_IDS = 5000  # blob ids a COPY checks (and on PostgreSQL share-locks) per statement
MAX_SUBSCRIPTIONS = 10_000  # names per account (RFC 3501 §6.3.6): LIST/LSUB read them all
HELD_CHUNK = 500  # held UIDs excluded by NOT IN per statement; more are excluded by UID ranges
RECENT_CLAIM_TRIES = 16  # compare-and-set rounds lost to other sessions before claiming nothing


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_utc(d: datetime) -> datetime:
    """Normalise before storing: SQLite's DateTime keeps no offset, so store UTC everywhere."""
    return d.astimezone(timezone.utc) if d.tzinfo else d.replace(tzinfo=timezone.utc)


def normalise_folder_name(name: str) -> str:
    """Validate a folder name; INBOX (any case) is INBOX (RFC 3501 §5.1)."""
    name = name.strip(DELIMITER) if name != DELIMITER else name
    if not name or len(name) > MAX_FOLDER_NAME:
        raise InvalidInput("invalid folder name")
    parts = name.split(DELIMITER)
    if any(p == "" for p in parts) or len(parts) > MAX_FOLDER_DEPTH:
        raise InvalidInput("invalid folder name (empty level)")
    if any(c in name for c in ("\r", "\n", "\0", "*", "%")):
        raise InvalidInput("folder names cannot contain *, % or control characters")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return DELIMITER.join(parts)


def _folder(partition: str, r, read_only: bool = False) -> Folder:
    return Folder(FolderRef(partition, r.id, r.uidvalidity, r.account_id), r.account_id, r.name, r.uidvalidity, r.uidnext,
                  r.highestmodseq, r.special_use, read_only)


PAGE_UID_RANGES = 200  # a message_page UID set in more ranges than this is filtered while reading instead of in SQL
# (SQLite refuses expressions deeper than 1000; a search hit in every other message is 5,000 ranges)
@dataclass(frozen=True)
class DeliveryResult:
    """Per target: an AppendResult, or the StoreError that refused it (over quota, no folder)."""

    results: tuple[AppendResult | Exception, ...]


class Store:
    def __init__(self, router: Router, directory: Directory, *, bus: ChangeBus | None = None,
                 blob_dir: BlobDirectory | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.router = router
        self.directory = directory
        self.bus = bus or ChangeBus()
        self.blob_dir = blob_dir
        self.clock = clock
        self._committers: dict[str, GroupCommitter] = {}
        self._folder_cache = FolderCache()
        self.node = pgbus.new_node_id()
        self.readstatus = ReadStatus(router.central)
        self.holds = Holds(router.central)
        self._relays: dict[str, pgbus.Relay] = {}
        self._indexers: dict[str, Indexer] = {}
        self.states = folderstate.Saver(self._save_state)
        for name, db in router.opened().items():
            self._watch(name, db)
        router.on_open.append(self._watch)

    async def close(self) -> None:
        await self.states.close()
        for c in self._committers.values():
            await c.close()
        for ix in self._indexers.values():
            await ix.close()  # what is pending stays so, and is indexed after the next start
        for relay in self._relays.values():
            await relay.close()
        await self.router.close()

    def _watch(self, name: str, db: Database) -> None:
        """Index what an earlier run left pending; on PostgreSQL, relay other nodes' change events."""
        if name not in self._indexers:
            self._indexers[name] = ix = Indexer(db, name)
            with contextlib.suppress(RuntimeError):  # no running loop (a synchronous caller): the first write starts it
                ix.start(leftovers=True)
        if db.dialect == "postgresql" and name not in self._relays:
            relay = pgbus.Relay(db.url, self.bus, self.node, name)
            relay.start()
            self._relays[name] = relay

    async def _announce(self, conn, event: FolderChanged) -> FolderChanged:
        """Inside the writing transaction: tell the other nodes (delivered at commit only)."""
        await pgbus.notify(conn, self.node, event)
        return event

    # --- partitions ----------------------------------------------------------------

    def home(self, account: Account) -> str:
        return self.router.home_partition(account.department_code)

    async def _db(self, partition: str) -> Database:
        return await self.router.database(partition)

    def files(self, partition: str) -> BlobDirectory | None:
        """The blob-directory view of a partition (None: bodies are kept in the database)."""
        return self.blob_dir.for_partition(partition) if self.blob_dir is not None else None

    async def partitions_of(self, account: Account) -> list[str]:
        """The account's home partition, then any other partition holding folders of it.

        This and the folder reads below run on every SELECT, STATUS and APPEND: each is one
        read_sync (on SQLite one hand-off to the reader's thread instead of nine).
        """
        out = [self.home(account)]
        query = (select(t.mail_locations.c.partition).where(t.mail_locations.c.account_id == account.id)
                 .order_by(t.mail_locations.c.partition))
        extra = await self.router.central.read_sync(lambda conn: conn.execute(query).scalars().all())
        out.extend(p for p in extra if p not in out)
        return out

    # --- folders ---------------------------------------------------------------------

    async def provision(self, account: Account) -> None:
        """Create INBOX and the special-use folders (RFC 6154) for a new account; idempotent."""
        await self.provision_many([account])

    async def provision_many(self, accounts: Sequence[Account]) -> None:
        """provision() for many accounts: one transaction per home partition (mailboxes.provisioning)."""
        homes: dict[str, list[Account]] = {}
        for account in accounts:
            homes.setdefault(self.home(account), []).append(account)
        for partition, theirs in homes.items():
            db = await self._db(partition)
            await db.write_sync(lambda conn, _blocking, theirs=theirs: provisioning.provision(conn, theirs, self.clock))

    async def folders(self, account: Account) -> list[Folder]:
        out: list[Folder] = []
        for part in await self.partitions_of(account):
            db = await self._db(part)
            async with db.read() as conn:
                rows = (await conn.execute(select(t.folders).where(t.folders.c.account_id == account.id)
                                           .order_by(t.folders.c.name))).all()
            out.extend(_folder(part, r) for r in rows)
        return out

    async def folder(self, account: Account, name: str) -> Folder:
        name = normalise_folder_name(name)
        query = select(t.folders).where(and_(t.folders.c.account_id == account.id, t.folders.c.name == name))
        for part in await self.partitions_of(account):
            db = await self._db(part)
            r = await db.read_sync(lambda conn: conn.execute(query).first())
            if r is not None:
                return _folder(part, r)
        raise NotFound(f"no folder {name}")

    async def folder_by_ref(self, ref: FolderRef) -> Folder:
        db = await self._db(ref.partition)
        query = select(t.folders).where(t.folders.c.id == ref.id)
        r = await db.read_sync(lambda conn: conn.execute(query).first())
        identity.check(ref, r)
        return _folder(ref.partition, r)

    async def create_folder(self, account: Account, name: str, *, special_use: str | None = None,
                            partition: str | None = None) -> Folder:
        name = normalise_folder_name(name)
        part = partition or self.home(account)
        try:
            await self.folder(account, name)
            raise AlreadyExists(f"folder {name} already exists")
        except NotFound:
            pass
        db = await self._db(part)
        async with db.write() as conn:
            # RFC 3501 §6.3.3: create the superior names that are needed too.
            levels = name.split(DELIMITER)
            for i in range(1, len(levels)):
                parent = DELIMITER.join(levels[:i])
                if not (await conn.execute(select(t.folders.c.id).where(and_(
                        t.folders.c.account_id == account.id, t.folders.c.name == parent)))).first():
                    await conn.execute(insert(t.folders).values(
                        account_id=account.id, name=parent, uidvalidity=await identity.next_uidvalidity(conn),
                        uidnext=1,
                        highestmodseq=1, special_use=None, created_at=self.clock()))
            res = await conn.execute(insert(t.folders).values(
                account_id=account.id, name=name, uidvalidity=await identity.next_uidvalidity(conn), uidnext=1,
                highestmodseq=1, special_use=special_use, created_at=self.clock()))
            fid = res.inserted_primary_key[0]
            r = (await conn.execute(select(t.folders).where(t.folders.c.id == fid))).first()
        return _folder(part, r)

    async def delete_folder(self, account: Account, name: str) -> None:
        f = await self.folder(account, name)
        if f.name == INBOX:
            raise InvalidInput("INBOX cannot be deleted")
        await self.refuse_if_held(f.ref)
        db = await self._db(f.ref.partition)
        async with db.write() as conn:
            released = await self._drop_folder(conn, f.ref, account.id if f.ref.partition == self.home(account)
                                               else None)
            ev = await self._announce(conn, FolderChanged(f.ref, 0, "folder"))
        self.bus.publish(f.ref, ev)
        await cleanup.finish(db, self.files(f.ref.partition), released)

    async def _drop_folder(self, conn, ref: FolderRef, usage_account: int | None) -> cleanup.Released:
        """Delete a folder with its messages, and the bodies only it referred to; usage follows the rows."""
        fq = select(t.folders.c.id).where(t.folders.c.id == ref.id)
        if conn.dialect.name == "postgresql":
            fq = fq.with_for_update()  # deliveries into it wait, then find it gone
        await conn.execute(fq)
        gone = (await conn.execute(delete(t.messages).where(t.messages.c.folder_id == ref.id)
                                   .returning(t.messages.c.size, t.messages.c.blob_id))).all()
        await conn.execute(delete(t.expunged).where(t.expunged.c.folder_id == ref.id))
        await conn.execute(delete(t.folder_states).where(t.folder_states.c.folder_id == ref.id))
        await conn.execute(delete(t.folder_acl).where(t.folder_acl.c.folder_id == ref.id))
        await conn.execute(delete(t.folders).where(t.folders.c.id == ref.id))
        released = await cleanup.collect(conn, [g.blob_id for g in gone])
        if usage_account is not None and gone:
            await self._add_usage(conn, usage_account, -sum(g.size for g in gone), -len(gone))
        return released

    async def purge_account(self, account: Account) -> int:
        """Delete every folder and message of an account in all its partitions (before it leaves the
        directory); returns the number of messages removed."""
        await self.refuse_if_held_account(account)
        n = 0
        home = self.home(account)
        for part in await self.partitions_of(account):
            db = await self._db(part)
            async with db.read() as conn:
                fids = (await conn.execute(select(t.folders.c.id).where(t.folders.c.account_id == account.id)
                                           .order_by(t.folders.c.id))).scalars().all()
            for fid in fids:
                ref = FolderRef(part, fid)
                async with db.write() as conn:
                    n += (await conn.execute(select(func.count()).where(t.messages.c.folder_id == fid))).scalar()
                    released = await self._drop_folder(conn, ref, account.id if part == home else None)
                    ev = await self._announce(conn, FolderChanged(ref, 0, "folder"))
                self.bus.publish(ref, ev)
                await cleanup.finish(db, self.files(part), released)
            async with db.write() as conn:
                await conn.execute(delete(t.mailbox_usage).where(t.mailbox_usage.c.account_id == account.id))
        return n

    async def recount_usage(self, account: Account) -> Quota:
        """Set the account's quota usage to what its stored messages add up to, and return it."""
        db = await self._db(self.home(account))
        async with db.write() as conn:
            used_b, used_m = await cleanup.recount_usage(conn, account.id)
        return Quota(used_b, used_m, account.quota_bytes, account.quota_messages)

    async def rename_folder(self, account: Account, old: str, new: str) -> None:
        """RFC 3501 §6.3.5: children move too; renaming INBOX moves its messages to a new folder."""
        src = await self.folder(account, old)
        new = normalise_folder_name(new)
        if new == INBOX:
            raise AlreadyExists("INBOX already exists")
        if src.name != INBOX and new.startswith(src.name + DELIMITER):
            # A folder cannot become its own descendant (the tree would hang from itself); Dovecot refuses too.
            raise InvalidInput(f"Cannot rename {src.name} into its own child folder")
        try:
            await self.folder(account, new)
            raise AlreadyExists(f"folder {new} already exists")
        except NotFound:
            pass
        if src.name == INBOX:
            dest = await self.create_folder(account, new)
            uids = [m.uid for m in await self.messages(src.ref)]
            if uids:
                await self.move(account, src.ref, uids, dest.ref)
            return
        db = await self._db(src.ref.partition)
        home = self.home(account)
        renamed: dict[str, str] = {}
        async with db.write() as conn:
            rows = (await conn.execute(select(t.folders.c.id, t.folders.c.name).where(and_(
                t.folders.c.account_id == account.id,
                or_(t.folders.c.name == src.name, t.folders.c.name.like(src.name + DELIMITER + "%")))))).all()
            events = []
            for r in rows:
                if r.name != src.name and not r.name.startswith(src.name + DELIMITER):
                    continue  # LIKE treats _ and % as wildcards
                # RFC 3501 §2.3.1.1: the new name may have been used before; a greater UIDVALIDITY.
                renamed[r.name] = new + r.name[len(src.name):]
                await conn.execute(update(t.folders).where(t.folders.c.id == r.id).values(
                    name=renamed[r.name], uidvalidity=await identity.next_uidvalidity(conn)))
                # Every folder renamed has a new generation: sessions on a child are told too.
                events.append(await self._announce(conn, FolderChanged(FolderRef(src.ref.partition, r.id), 0,
                                                                       "folder")))
            if home == src.ref.partition:  # the usual case: names and folders change in one transaction
                await move_subscriptions(conn, account.id, renamed)
        if home != src.ref.partition:  # the list lives in the home partition, the folder elsewhere
            async with (await self._db(home)).write() as conn:
                await move_subscriptions(conn, account.id, renamed)
        for ev in events:
            self.bus.publish(ev.folder, ev)

    # --- subscriptions (RFC 3501 §6.3.6, §6.3.7): names, whether or not a folder has them ---------

    async def subscriptions(self, account: Account) -> list[str]:
        db = await self._db(self.home(account))
        async with db.read() as conn:
            return list((await conn.execute(select(t.subscriptions.c.name)
                                            .where(t.subscriptions.c.account_id == account.id)
                                            .order_by(t.subscriptions.c.name))).scalars())

    async def subscribe(self, account: Account, name: str, subscribed: bool = True) -> None:
        """Add ``name`` to (or take it off) the account's list; idempotent, existence not checked here.

        DELETE of a folder leaves the list alone: the server MUST NOT remove a name unilaterally,
        even when no folder has it any more (RFC 3501 §6.3.6; SHOULD NOT in RFC 9051 §6.3.7).
        RENAME moves the renamed folders' subscriptions to their new names, as Dovecot does
        (mailboxes/subscriptions.py).
        """
        name = normalise_folder_name(name)
        db = await self._db(self.home(account))
        key = and_(t.subscriptions.c.account_id == account.id, t.subscriptions.c.name == name)
        async with db.write() as conn:
            if not subscribed:
                await conn.execute(delete(t.subscriptions).where(key))
                return
            if (await conn.execute(select(t.subscriptions.c.name).where(key))).first() is not None:
                return
            count = (await conn.execute(select(func.count()).where(
                t.subscriptions.c.account_id == account.id))).scalar()
            if count >= MAX_SUBSCRIPTIONS:
                raise OverQuota(f"at most {MAX_SUBSCRIPTIONS} subscriptions", permanent=True)
            await conn.execute(insert(t.subscriptions).values(account_id=account.id, name=name))

    # --- \Recent, shared by every session (RFC 3501 §2.3.2) --------------------------------------

    async def claim_recent(self, ref: FolderRef, top: int, *, read_only: bool = False,
                           mark: int | None = None) -> int:
        """Take the UIDs up to ``top`` as recent for the caller; returns the UID they start above.

        The caller's recent messages are those with ``returned < uid <= top``. A read-write
        caller moves folders.recent_uid to ``top`` with one compare-and-set UPDATE, so of two
        sessions racing (in one process or on two nodes) exactly one gets each UID; the loser
        reads the new mark and claims only what is above it. A read-only caller (EXAMINE)
        takes nothing (RFC 3501 §6.3.2) and sees what nobody has claimed yet. ``mark``: the
        recent_uid the caller just read with the folder (Listing.recent_uid), saving the first
        read; a stale one only costs a lost compare-and-set round.
        """
        db = await self._db(ref.partition)
        col = t.folders.c.recent_uid
        for _ in range(RECENT_CLAIM_TRIES):
            if mark is not None:
                last, mark = mark, None
            else:
                async with db.read() as conn:
                    last = (await conn.execute(select(col).where(t.folders.c.id == ref.id))).scalar()
            if last is None:
                raise NotFound("folder deleted")
            if read_only or last >= top:
                return min(int(last), top)
            claim = update(t.folders).where(and_(t.folders.c.id == ref.id, col == last)).values(recent_uid=top)
            done = await db.write_sync(lambda conn, _blocking: conn.execute(claim).rowcount)  # one thread hop
            if done == 1:
                return int(last)
        return top  # lost every round: others took them

    async def status(self, ref: FolderRef) -> FolderStatus:
        db = await self._db(ref.partition)
        seen, deleted = int(Flag.SEEN), int(Flag.DELETED)
        async with db.read() as conn:
            f = (await conn.execute(select(t.folders).where(t.folders.c.id == ref.id))).first()
            identity.check(ref, f)
            r = (await conn.execute(select(
                func.count(),
                func.coalesce(func.sum(t.messages.c.size), 0),
                func.coalesce(func.sum(case((t.messages.c.flags.op("&")(seen) == 0, 1), else_=0)), 0),
                func.coalesce(func.sum(case((t.messages.c.flags.op("&")(deleted) != 0, 1), else_=0)), 0),
                func.coalesce(func.sum(case((t.messages.c.uid > f.recent_uid, 1), else_=0)), 0),
            ).where(t.messages.c.folder_id == ref.id))).first()
        return FolderStatus(_folder(ref.partition, f), int(r[0]), int(r[2]), int(r[1]), int(r[3]), int(r[4]))

    async def counts(self, folders: Iterable[Folder]) -> dict[FolderRef, tuple[int, int]]:
        """(messages, unseen) of each folder: one grouped query per partition (the webmail's folder tree)."""
        by_part: dict[str, list[Folder]] = {}
        for f in folders:
            by_part.setdefault(f.ref.partition, []).append(f)
        seen = int(Flag.SEEN)
        out: dict[FolderRef, tuple[int, int]] = {}
        for part, fs in by_part.items():
            db = await self._db(part)
            c = t.messages.c
            async with db.read() as conn:
                rows = (await conn.execute(select(
                    c.folder_id, func.count(),
                    func.coalesce(func.sum(case((c.flags.op("&")(seen) == 0, 1), else_=0)), 0))
                    .where(c.folder_id.in_([f.ref.id for f in fs])).group_by(c.folder_id))).all()
            got = {r[0]: (int(r[1]), int(r[2])) for r in rows}
            out.update({f.ref: got.get(f.ref.id, (0, 0)) for f in fs})
        return out

    # --- reading -------------------------------------------------------------------------

    # The hot read (a SELECT of 10,000 messages): on SQLite the date comes back as text
    # and is parsed by datetime.fromisoformat, 5x faster than the DateTime type's regex.
    _meta_cols = META_COLS

    async def messages(self, ref: FolderRef) -> list[MessageMeta]:
        """All messages of a folder in UID order."""
        return (await self.listing(ref)).metas

    async def listing(self, ref: FolderRef) -> Listing:
        """The folder row, its \\Recent mark and all its messages in UID order, read together (SELECT)."""
        return await read_listing(await self._db(ref.partition), ref, lambda r: _folder(ref.partition, r))

    async def listing_state(self, ref: FolderRef) -> StateListing:
        """The folder row, its \\Recent mark and every message's UID, MODSEQ and flags as columns (SELECT).

        Read from the folder's saved state and what changed since when there is one
        (mailboxes.folderstate); saved again in the background when reading it took many rows.
        """
        got = await read_state(await self._db(ref.partition), ref, lambda r: _folder(ref.partition, r))
        self.state_read(ref, got.folder.uidvalidity, got.folder.highestmodseq, got.columns, got.behind)
        return got

    def state_read(self, ref: FolderRef, uidvalidity: int, modseq: int, cols: folderstate.Columns,
                   behind: int) -> None:
        """A folder's state was read at ``modseq`` with ``behind`` rows beyond its saved state: save it if worth it.

        The IMAP server's in-memory snapshots tell this too when they fold many changes in.
        """
        if folderstate.wants_saving(len(cols.uids), behind):
            self.states.want(ref, uidvalidity, modseq, cols)

    async def _save_state(self, ref: FolderRef, uidvalidity: int, modseq: int, cols: folderstate.Columns) -> bool:
        db = await self._db(ref.partition)
        enc = await asyncio.to_thread(folderstate.encode, cols)  # off the loop, and before the writer is taken
        return await db.write_sync(lambda conn, _blocking: folderstate.save_sync(conn, ref.id, uidvalidity, modseq,
                                                                                  enc))

    async def facts(self, ref: FolderRef, uids: list[int]) -> dict[int, FixedFacts]:
        """Internal date, size and blob of the messages ``uids`` (ascending) names; an expunged one is left out."""
        return await read_facts(await self._db(ref.partition), ref.id, uids)

    async def folder_changes(self, ref: FolderRef, modseq: int) -> FolderChanges:
        """The folder row and \\Recent mark with changes_since(modseq), read together (a SELECT of a known folder)."""
        return await read_changes(await self._db(ref.partition), ref, modseq, lambda r: _folder(ref.partition, r))

    async def message_page(self, ref: FolderRef, *, offset: int, limit: int, newest_first: bool = True,
                           uids: Iterable[int] | None = None) -> list[MessageMeta]:
        """One page of a folder by arrival date (then UID), for the webmail's message list (among `uids` if given)."""
        db = await self._db(ref.partition)
        c = t.messages.c
        order = (c.internal_date.desc(), c.uid.desc()) if newest_first else (c.internal_date, c.uid)
        where = c.folder_id == ref.id
        wanted: set[int] | None = None
        if uids is not None:
            wanted = set(uids)
            if not wanted:
                return []
            if len(_uid_ranges(wanted)) <= PAGE_UID_RANGES:
                where, wanted = and_(where, uid_condition(wanted)), None
        async with db.read() as conn:
            identity.check(ref, (await conn.execute(select(t.folders).where(t.folders.c.id == ref.id))).first())
            cols = self._meta_cols
            q = select(*cols).where(where).order_by(*order)
            if wanted is None:
                return [_meta(r) for r in (await conn.execute(q.offset(max(0, offset)).limit(max(0, limit)))).all()]
            # A scattered UID set: walk the folder's UIDs in date order (the covering index
            # ix_messages_date, no row read), keep the wanted ones, then read one page of rows.
            order_uids = (await conn.execute(select(c.uid).where(where).order_by(*order))).scalars().all()
            page = [u for u in order_uids if u in wanted][max(0, offset):max(0, offset) + max(0, limit)]
            if not page:
                return []
            rows = (await conn.execute(q.where(uid_condition(set(page))))).all()
        return [_meta(r) for r in rows]

    async def search_page(self, ref: FolderRef, query: str, *, offset: int, limit: int,
                          newest_first: bool = True) -> tuple[int, list[MessageMeta]] | None:
        """The webmail's search: (count, one page) of the messages the word index matches (searchpage.py)."""
        from .searchpage import search_page
        await self.catch_up_index(ref.partition, ref.id)
        return await search_page(await self._db(ref.partition), ref, query, offset=offset, limit=limit,
                                 newest_first=newest_first)

    async def message(self, ref: FolderRef, uid: int) -> MessageMeta | None:
        """One message of a folder by UID (None: no such message there)."""
        db = await self._db(ref.partition)
        async with db.read() as conn:
            identity.check(ref, (await conn.execute(select(t.folders).where(t.folders.c.id == ref.id))).first())
            cols = self._meta_cols
            rows = (await conn.execute(select(*cols).where(and_(t.messages.c.folder_id == ref.id,
                                                                 t.messages.c.uid == uid)))).all()
        return _meta(rows[0]) if rows else None

    async def parsed(self, partition: str, blob_ids: Iterable[int]) -> dict[int, str]:
        """The stored parse (mime.ParsedMessage JSON) of each blob.

        A blob removed meanwhile (its last message was expunged by another session,
        which a session still showing it learns only at its next command) reads
        as an empty message, as RFC 2180 §4.1.3 allows.
        """
        ids = list(dict.fromkeys(blob_ids))
        out: dict[int, str] = {}
        db = await self._db(partition)
        async with db.read() as conn:
            for i in range(0, len(ids), 900):
                rows = (await conn.execute(select(t.blobs.c.id, t.blobs.c.parsed)
                                           .where(t.blobs.c.id.in_(ids[i:i + 900])))).all()
                out.update({r.id: r.parsed for r in rows})
        if len(out) < len(ids):
            gone = cleanup.empty_parse()
            out.update({b: gone for b in ids if b not in out})
        return out

    async def raw(self, partition: str, blob_id: int) -> bytes:
        db = await self._db(partition)
        async with db.read() as conn:
            return await read_raw(conn, blob_id, self.files(partition))

    async def raw_range(self, partition: str, blob_id: int, start: int, end: int) -> bytes:
        """Bytes [start, end) of a stored message: one part (offsets from its stored parse), the rest unread."""
        db = await self._db(partition)
        if db.dialect == "sqlite":
            return await read_raw_range_sqlite(db, blob_id, start, end, self.files(partition))
        async with db.read() as conn:
            return await read_raw_range(conn, blob_id, start, end, self.files(partition))

    async def raw_many(self, partition: str, blob_ids: Iterable[int]) -> dict[int, bytes]:
        ids = list(dict.fromkeys(blob_ids))
        out: dict[int, bytes] = {}
        db = await self._db(partition)
        async with db.read() as conn:
            for i in range(0, len(ids), 900):
                rows = (await conn.execute(select(t.blobs.c.id, t.blobs.c.sha256, t.blobs.c.data)
                                           .where(t.blobs.c.id.in_(ids[i:i + 900])))).all()
                for r in rows:
                    if r.data is not None:
                        out[r.id] = bytes(r.data)
                    elif (files := self.files(partition)) is not None:
                        try:
                            out[r.id] = await files.read(bytes(r.sha256))
                        except NotFound:
                            if await self._blob_exists(partition, r.id):
                                raise
                            # removed after this read began: as if the row were gone
                            out[r.id] = b""
                    else:
                        raise NotFound(f"blob {r.id} is kept in a blob directory, but none is configured")
        return out

    async def _blob_exists(self, partition: str, blob_id: int) -> bool:
        db = await self._db(partition)
        async with db.read() as conn:
            return (await conn.execute(select(t.blobs.c.id).where(t.blobs.c.id == blob_id))).first() is not None

    async def present(self, ref: FolderRef, shas: Iterable[bytes]) -> set[bytes]:
        """Which of these message hashes are already in the folder (an import rerun skips them)."""
        shas = list(dict.fromkeys(shas))
        out: set[bytes] = set()
        db = await self._db(ref.partition)
        async with db.read() as conn:
            for i in range(0, len(shas), 500):
                rows = await conn.execute(select(t.blobs.c.sha256).join(t.messages, t.messages.c.blob_id == t.blobs.c.id)
                                          .where(and_(t.messages.c.folder_id == ref.id,
                                                      t.blobs.c.sha256.in_(shas[i:i + 500]))))
                out.update(bytes(r[0]) for r in rows)
        return out

    async def changes_since(self, ref: FolderRef, modseq: int) -> Changes:
        """Messages changed and UIDs expunged after `modseq` (RFC 7162 CONDSTORE/QRESYNC)."""
        return (await self.folder_changes(ref, modseq)).changes

    def indexer(self, partition: str) -> Indexer:
        """The search indexing of an open partition (indexer.py)."""
        return self._indexers[partition]

    async def catch_up_index(self, partition: str, folder: int | None = None) -> int:
        """Index the bodies still pending in this partition, or of this folder's messages only (before a
        search of the folder reads the indexes)."""
        await self._db(partition)  # opened: its indexer exists
        return await self._indexers[partition].catch_up(folder)

    async def search_text(self, ref: FolderRef, column: str | None, query: str) -> set[int] | None:
        """UIDs in a folder whose indexed `column` (subject, addrs, body; None: any) matches.

        None when the query has no indexable terms (the caller decides, e.g. match all).
        """
        from .search import folder_uids_sql
        db = await self._db(ref.partition)
        q = folder_uids_sql(db.dialect, column, query)
        if q is None:
            return None
        await self.catch_up_index(ref.partition, ref.id)
        sql, params = q
        async with db.read() as conn:
            rows = await conn.execute(text(sql), {"fid": ref.id, **params})
            return {r[0] for r in rows}

    async def search_substring(self, ref: FolderRef, where: str, needle: str) -> set[int]:
        """UIDs in a folder whose body (``where`` "body") or header and body ("text") contain ``needle``.

        RFC 3501 §6.4.4 substring, case-insensitive (NFKC + casefold); see substring.py
        for the index, its caps and what answers a needle shorter than a trigram.
        """
        from .substring import folder_queries
        db = await self._db(ref.partition)
        await self.catch_up_index(ref.partition, ref.id)
        found: set[int] = set()
        async with db.read() as conn:
            for sql, params in folder_queries(db.dialect, where, needle):
                found.update(r[0] for r in await conn.execute(text(sql), {"fid": ref.id, **params}))
        return found

    async def quota(self, account: Account) -> Quota:
        db = await self._db(self.home(account))
        async with db.read() as conn:
            r = (await conn.execute(select(t.mailbox_usage).where(
                t.mailbox_usage.c.account_id == account.id))).first()
        used_b, used_m = (r.bytes, r.messages) if r else (0, 0)
        return Quota(int(used_b), int(used_m), account.quota_bytes, account.quota_messages)

    # --- writing: append and delivery (group commit) --------------------------------------

    def _committer(self, partition: str, db: Database) -> GroupCommitter:
        c = self._committers.get(partition)
        if c is None:
            c = GroupCommitter(lambda batch: self._write_deliveries(partition, db, batch))
            self._committers[partition] = c
        return c

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Write one message into every target folder; durable when this returns.

        Deliveries from concurrent sessions to the same partition share one
        transaction and one disk sync (group commit). Targets in different
        partitions (department databases) are written per partition.
        """
        by_part: dict[str, list[int]] = {}
        for i, (acct, _folder_name) in enumerate(delivery.targets):
            by_part.setdefault(self.home(acct), []).append(i)
        results: list[AppendResult | Exception | None] = [None] * len(delivery.targets)
        jobs = []
        for part, idxs in by_part.items():
            db = await self._db(part)
            sub = Delivery(delivery.message, tuple(delivery.targets[i] for i in idxs), delivery.flags,
                           delivery.keywords, delivery.internal_date,
                           tuple(delivery.tracks[i] for i in idxs) if delivery.tracks else ())
            jobs.append((idxs, self._committer(part, db).submit(sub)))
        for idxs, job in jobs:
            part_results = await job
            for i, r in zip(idxs, part_results):
                results[i] = r
        return DeliveryResult(tuple(results))  # type: ignore[arg-type]

    async def append(self, account: Account, folder: str | FolderRef, message: PreparedMessage, *,
                     flags: int = 0, keywords: Iterable[str] = (),
                     internal_date: datetime | None = None, track: int | None = None) -> AppendResult:
        """IMAP APPEND / import: one message into one folder; raises the StoreError on refusal.

        ``track``: a copy of a tracked message (readstatus.py) keeps its id (COPY across partitions).
        """
        if isinstance(folder, FolderRef):
            name = (await self.folder_by_ref(folder)).name
        else:
            name = folder
        res = await self.deliver(Delivery(message, ((account, name),), flags, tuple(keywords), internal_date,
                                          (track,) if track is not None else ()))
        r = res.results[0]
        if isinstance(r, Exception):
            raise r
        return r

    async def append_many(self, account: Account, folder: FolderRef, messages: Sequence[Delivery]
                          ) -> list[AppendResult]:
        """IMAP MULTIAPPEND (RFC 3502 §3): several messages into one folder in one transaction, all or none.

        Each Delivery's ``targets`` is ignored (the folder is ``folder``); the first refusal
        (over quota, no such folder) is raised and nothing is written. UIDs are consecutive.
        """
        name = (await self.folder_by_ref(folder)).name
        batch = [Delivery(d.message, ((account, name),), d.flags, d.keywords, d.internal_date) for d in messages]
        partition = self.home(account)  # as append() and deliver() do
        rows = await self._write_deliveries(partition, await self._db(partition), batch, atomic=True)
        return [r for [r] in rows]  # type: ignore[misc]  # atomic: every result is an AppendResult

    async def _write_deliveries(self, partition: str, db: Database, batch: list[Delivery], *,
                                atomic: bool = False) -> list[list[AppendResult | Exception]]:
        """One transaction for a batch of deliveries; per-target refusals are results, not failures.

        ``atomic``: the first refusal is raised instead, which rolls the whole batch back.
        """
        wanted: dict[tuple[int, str], str | Exception] = {}
        for d in batch:
            for acct, fname in d.targets:
                if (acct.id, fname) not in wanted:
                    try:
                        wanted[(acct.id, fname)] = normalise_folder_name(fname)
                    except InvalidInput as exc:
                        wanted[(acct.id, fname)] = exc
        now = self.clock()
        plan = Batch(partition, batch, wanted, [to_utc(d.internal_date or now) for d in batch], self.node, atomic)
        files = self.files(partition)
        lone = lone_cached(plan, self._folder_cache) if db.dialect == "postgresql" and files is None else None
        done = None
        if lone is not None:  # a lone session's message: one round trip (deliverywrite.one_pg)
            done = await db.autocommit_sync(lambda conn: one_pg(conn, plan, *lone))
        if done is not None:
            out, events = done
        else:
            out, events = await self._write_batch(db, plan, files)
        for ev in events:  # commit first, then broadcast
            self.bus.publish(ev.folder, ev)
        self._indexers[partition].written(len(batch))  # their bodies wait in blob_index_pending
        return out

    async def _write_batch(self, db: Database, plan: Batch, files: BlobDirectory | None
                           ) -> tuple[list[list[AppendResult | Exception]], list[FolderChanged]]:
        try:
            return await db.write_sync(
                lambda conn, blocking: write_batch(conn, blocking, plan, files, self._folder_cache, True))
        except StaleCache:
            return await db.write_sync(
                lambda conn, blocking: write_batch(conn, blocking, plan, files, self._folder_cache, False))

    async def _add_usage(self, conn, account_id: int, dbytes: int, dmessages: int) -> None:
        await conn.execute(update(t.mailbox_usage).where(t.mailbox_usage.c.account_id == account_id).values(
            bytes=t.mailbox_usage.c.bytes + dbytes, messages=t.mailbox_usage.c.messages + dmessages))

    # --- flags, expunge, copy, move ------------------------------------------------------

    async def store_flags(self, ref: FolderRef, uids: Iterable[int], mode: str, flags: int,
                          keywords: Iterable[str] = (), *, unchanged_since: int | None = None
                          ) -> tuple[list[MessageMeta], list[int]]:
        """STORE (RFC 3501 §6.4.6, RFC 7162 §3.1.3): mode is add, remove or replace.

        Returns (messages whose flags changed, with new MODSEQ; UIDs that
        failed the UNCHANGEDSINCE test).
        """
        if mode not in ("add", "remove", "replace"):
            raise InvalidInput("bad STORE mode")
        uids = sorted(set(uids))
        keywords = frozenset(keywords)
        if not uids:
            return [], []
        db = await self._db(ref.partition)
        changed_metas, failed, event, read_now = await db.write_sync(lambda conn, _blocking: store_flags_sync(
            conn, self.node, ref, uids, mode, flags, keywords, unchanged_since))
        changed_metas.sort(key=lambda m: m.uid)
        if event is not None:  # committed: now tell this process's sessions
            self.bus.publish(ref, event)
        if read_now:  # committed: the first read of a colleague's copy (none read for untracked mail)
            try:
                await self.readstatus.mark_read(read_now, self.clock())
            except (SQLAlchemyError, OSError) as exc:  # the flags are stored; the client must hear so
                log.warning("read status of %d copies not recorded: %s", len(read_now), exc)
        return changed_metas, sorted(failed)

    async def expunge(self, ref: FolderRef, uids: Iterable[int] | None = None, *,
                      deleted_only: bool = True) -> list[int]:
        """Remove \\Deleted messages (only among `uids` when given: UID EXPUNGE, RFC 4315 §2.1).

        ``deleted_only=False`` removes the `uids` whatever their flags (MOVE's second half).
        Messages under a legal hold stay (expunge_report says which).
        """
        return (await self.expunge_report(ref, uids, deleted_only=deleted_only))[0]

    async def expunge_report(self, ref: FolderRef, uids: Iterable[int] | None = None, *,
                             deleted_only: bool = True) -> tuple[list[int], dict[int, LegalHold]]:
        """As expunge(), and the UIDs a legal hold kept, each with the hold that kept it."""
        c = t.messages.c
        where = c.folder_id == ref.id
        if deleted_only or uids is None:
            where = and_(where, c.flags.op("&")(int(Flag.DELETED)) != 0)
        if uids is not None:
            uids = list(uids)
            if not uids:
                return [], {}
            wheres = [and_(where, cond) for cond in uid_conditions(uids)]
        else:
            wheres = [where]
        gone, kept = await self._remove_report(ref, wheres)
        return sorted(g.uid for g in gone), kept

    async def expunge_tracked(self, account: Account, track: int) -> tuple[int, bool]:
        """Remove every copy of a tracked message (readstatus.py) from the account's folders, in all its
        partitions; returns (copies removed, whether any had \\Seen when it was removed)."""
        c = t.messages.c
        removed, seen = 0, False
        for part in await self.partitions_of(account):
            db = await self._db(part)
            async with db.read() as conn:
                fids = (await conn.execute(select(c.folder_id).where(c.track_id == track).distinct()
                                           .order_by(c.folder_id))).scalars().all()
            for fid in fids:
                gone = await self._remove(FolderRef(part, fid), [and_(c.folder_id == fid, c.track_id == track)])
                removed += len(gone)
                seen = seen or any(g.flags & Flag.SEEN for g in gone)
        return removed, seen

    async def _remove(self, ref: FolderRef, wheres: list) -> list:
        return (await self._remove_report(ref, wheres))[0]

    async def _remove_report(self, ref: FolderRef, wheres: list) -> tuple[list, dict[int, LegalHold]]:
        """Delete the messages the `wheres` name from one folder in one write transaction
        (messagewrite.remove_sync), then the EXPUNGE event and the blob files; those a legal
        hold covers are left in place and returned with their hold."""
        db = await self._db(ref.partition)
        central = db is self.router.central  # the holds are in the same database: checked in the one transaction
        kept = {} if central else await self._held(ref, wheres)
        if kept:
            wheres = await self._unheld_wheres(ref, wheres, kept)
            if not wheres:
                return [], kept
        try:
            gone, event, released = await db.write_sync(lambda conn, _blocking: remove_sync(
                conn, self.node, ref, wheres, check_holds=central))
        except HoldsActive:
            kept = await self._held(ref, wheres)
            wheres = await self._unheld_wheres(ref, wheres, kept)
            if not wheres:
                return [], kept
            gone, event, released = await db.write_sync(lambda conn, _blocking: remove_sync(
                conn, self.node, ref, wheres))
        if event is None:
            return [], kept
        self.bus.publish(ref, event)
        await cleanup.finish(db, self.files(ref.partition), released)
        return gone, kept

    async def _held(self, ref: FolderRef, wheres: list) -> dict[int, LegalHold]:
        """UID -> hold, for the messages the `wheres` name that an active legal hold covers."""
        holds = await self.holds.active()
        if not holds:
            return {}
        db = await self._db(ref.partition)
        owner_q = select(t.folders.c.account_id).where(t.folders.c.id == ref.id)
        owner_id = await db.read_sync(lambda conn: conn.execute(owner_q).scalar())
        try:
            owner = await self.directory.account_by_id(owner_id) if owner_id is not None else None
        except NotFound:
            owner = None
        cover = [h for h in holds if h.covers_account(owner)]
        if not cover:
            return {}
        c = t.messages.c
        rows = await db.read_sync(lambda conn: [r for w in wheres for r in conn.execute(
            select(c.uid, c.blob_id, c.internal_date).where(w)).all()])
        return await held_uids(self, ref, cover, rows)

    async def _unheld_wheres(self, ref: FolderRef, wheres: list, kept: dict[int, LegalHold]) -> list:
        """The `wheres` narrowed to leave out the `kept` UIDs ([] when nothing is left to remove)."""
        if not kept:
            return wheres
        c = t.messages.c
        if len(kept) <= HELD_CHUNK:
            return [and_(w, c.uid.not_in(list(kept))) for w in wheres]
        db = await self._db(ref.partition)
        uids = await db.read_sync(lambda conn: [u for w in wheres for u in conn.execute(select(c.uid).where(w))
                                                .scalars().all()])
        return [and_(w, cond) for w in wheres for cond in uid_conditions([u for u in uids if u not in kept])]

    async def refuse_if_held(self, ref: FolderRef) -> None:
        """Raise UnderHold, naming the hold, if a legal hold covers any message of the folder."""
        kept = await self._held(ref, [t.messages.c.folder_id == ref.id])
        if kept:
            hold = next(iter(kept.values()))
            raise UnderHold(f"{len(kept)} message(s) are under {hold.label}")

    async def refuse_if_held_account(self, account: Account) -> None:
        """Raise UnderHold if a legal hold covers the account, or any of its messages (before its removal)."""
        for h in await self.holds.active():
            if h.kind != "search" and h.covers_account(account):
                raise UnderHold(f"{account.address} is under {h.label}")
        for f in await self.folders(account):
            await self.refuse_if_held(f.ref)

    async def copy(self, account: Account, src: FolderRef, uids: Iterable[int], dest: FolderRef
                   ) -> tuple[int, list[tuple[int, int]]]:
        """COPY (RFC 3501 §6.4.7, UIDPLUS COPYUID): returns dest UIDVALIDITY and (src uid, dest uid) pairs."""
        uids = sorted(set(uids))
        await self.folder_by_ref(src)  # the source is still the folder the caller means
        wanted = set(uids)  # once: a set per message made COPY of 30,000 take 14 s
        metas = [m for m in await self.messages(src) if m.uid in wanted]
        if not metas:
            f = await self.folder_by_ref(dest)
            return f.uidvalidity, []
        if src.partition == dest.partition:
            return await self._copy_same(account, src, metas, dest)
        raws = await self.raw_many(src.partition, [m.blob_id for m in metas])
        parsed = await self.parsed(src.partition, [m.blob_id for m in metas])
        async with (await self._db(src.partition)).read() as conn:
            tracks = await self._tracks(conn, src, metas)
        from .ingest import prepare_stored
        pairs = []
        uidv = 0
        dest_folder = await self.folder_by_ref(dest)
        for m in metas:
            pm = prepare_stored(raws[m.blob_id], parsed[m.blob_id])
            r = await self.append(account, dest_folder.name, pm, flags=m.flags, keywords=m.keywords,
                                  internal_date=m.internal_date, track=tracks.get(m.uid))
            uidv = r.uidvalidity
            pairs.append((m.uid, r.uid))
        return uidv, pairs

    @staticmethod
    async def _tracks(conn, src: FolderRef, metas: list[MessageMeta]) -> dict[int, int]:
        """UID -> read-status copy id of the tracked messages among `metas` (a copy keeps it: readstatus.py)."""
        c = t.messages.c
        out: dict[int, int] = {}
        for cond in uid_conditions(m.uid for m in metas):  # a scattered set is several bounded statements
            rows = await conn.execute(select(c.uid, c.track_id).where(and_(
                c.folder_id == src.id, c.track_id.is_not(None), cond)))
            out.update((r.uid, r.track_id) for r in rows)
        return out

    async def _copy_same(self, account: Account, src: FolderRef, metas: list[MessageMeta], dest: FolderRef
                         ) -> tuple[int, list[tuple[int, int]]]:
        db = await self._db(dest.partition)
        async with db.write() as conn:
            # The sources were read before this transaction: keep only those whose body still
            # exists, and hold it (cleanup.py) until the copies are committed.
            blob_ids = sorted({m.blob_id for m in metas})
            alive: set[int] = set()
            for i in range(0, len(blob_ids), COPY_BLOB_IDS):  # bounded IN lists (asyncpg: 32,767 parameters)
                bq = select(t.blobs.c.id).where(t.blobs.c.id.in_(blob_ids[i:i + COPY_BLOB_IDS]))
                if conn.dialect.name == "postgresql":
                    bq = bq.order_by(t.blobs.c.id).with_for_update(read=True, key_share=True)
                alive.update((await conn.execute(bq)).scalars().all())
            metas = [m for m in metas if m.blob_id in alive]
            if not metas:
                return (await conn.execute(select(t.folders.c.uidvalidity)
                                           .where(identity.names_folder(dest)))).scalar() or 0, []
            size = sum(m.size for m in metas)
            tracks = await self._tracks(conn, src, metas)
            owner = (await conn.execute(select(t.folders.c.account_id).where(identity.names_folder(dest)))).scalar()
            if owner is None:
                raise NotFound("destination folder no longer exists")
            if owner == account.id:
                u = (await conn.execute(select(t.mailbox_usage.c.bytes, t.mailbox_usage.c.messages)
                                        .where(t.mailbox_usage.c.account_id == owner))).first()
                usage = [int(u.bytes), int(u.messages)] if u else [0, 0]
                err = quota_error(account, usage, size, count=len(metas))
                if err is not None:
                    raise err
            r = (await conn.execute(update(t.folders).where(t.folders.c.id == dest.id).values(
                uidnext=t.folders.c.uidnext + len(metas), highestmodseq=t.folders.c.highestmodseq + 1)
                .returning(t.folders.c.uidnext, t.folders.c.highestmodseq, t.folders.c.uidvalidity))).first()
            first = r.uidnext - len(metas)
            pairs = [(m.uid, first + i) for i, m in enumerate(metas)]
            for k in range(0, len(metas), COPY_CHUNK):  # the rows are built and bound a chunk at a time, between
                # which the event loop serves others (10,000 at once held it for over 100 ms)
                await conn.execute(insert(t.messages), [
                    {"folder_id": dest.id, "uid": first + i, "modseq": r.highestmodseq, "flags": m.flags,
                     "keywords": " ".join(sorted(m.keywords)), "internal_date": to_utc(m.internal_date),
                     "size": m.size, "blob_id": m.blob_id, "track_id": tracks.get(m.uid)}
                    for i, m in enumerate(metas[k:k + COPY_CHUNK], k)])
            await self._add_usage(conn, owner, size, len(metas))
            ev = await self._announce(conn, FolderChanged(dest, r.highestmodseq, "append"))
        self.bus.publish(dest, ev)
        return r.uidvalidity, pairs

    async def move(self, account: Account, src: FolderRef, uids: Iterable[int], dest: FolderRef
                   ) -> tuple[int, list[tuple[int, int]]]:
        """MOVE (RFC 6851): copy, then expunge the sources (the copy is committed first).

        The sources are removed without ever being flagged \\Deleted: other sessions see the
        EXPUNGE and nothing before it, and a crash between the two commits leaves the message
        unchanged in the source (RFC 6851 §3.3: each message moved or unaffected, none lost).
        """
        uidv, pairs, _kept = await self.move_report(account, src, uids, dest)
        return uidv, pairs

    async def move_report(self, account: Account, src: FolderRef, uids: Iterable[int], dest: FolderRef
                          ) -> tuple[int, list[tuple[int, int]], dict[int, LegalHold]]:
        """As move(), and the sources a legal hold kept in place (copied, not removed)."""
        uids = sorted(set(uids))
        uidv, pairs = await self.copy(account, src, uids, dest)
        moved = [s for s, _ in pairs]
        kept: dict[int, LegalHold] = {}
        if moved:
            _gone, kept = await self.expunge_report(src, moved, deleted_only=False)
        return uidv, pairs, kept
