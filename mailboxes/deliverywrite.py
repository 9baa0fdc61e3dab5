"""The delivery transaction: a group-commit batch of messages written into folders by one synchronous function.

Store.deliver queues a message with the partition's GroupCommitter; the batch
then runs as `write_batch` under Database.write_sync, so on SQLite the whole
transaction is one hand-off to the writer thread (see db.py).

Implementation notes (invariants):
- A batch costs a fixed number of statements however many messages, accounts and
  folders it touches. Today, for a message to one INBOX: BEGIN, the blob (look-up,
  insert-or-ignore, its pending-index row: indexer.py), one UPDATE of the folder row
  that allocates the UIDs and MODSEQ and returns them, one of the usage row that
  returns it (the quota check), the message rows; on PostgreSQL one pg_notify.
  On PostgreSQL each round trip costs more than the statement (asyncpg and SQLAlchemy on
  the loop, the server's parse and executor): a lone session's message into a cached folder
  is one statement that commits itself (_ONE_PG, run outside a transaction: no BEGIN, no
  COMMIT), one round trip where there were four (smtp-source at 1 session: 253 -> 286 msg/s,
  2.08 -> 1.82 ms of CPU a message); what it declines (a stored body, a stale folder, a quota
  too near) takes the transaction below: a new body and its pending-index row in one statement
  (blobs._put_one_pg), the cached path in another (_CACHED_PG).
- The folder of (account, name) is remembered as its id and UIDVALIDITY
  (FolderCache): a folder is never renamed without a new UIDVALIDITY, and ids are
  never reused, so the pair still names that folder exactly when a row with both
  exists. That is checked at use by the UPDATE that allocates the UIDs (it
  returns the row's UIDVALIDITY); a miss, a refusal or a stale entry makes the
  batch start again, read from the folder rows (StaleCache).
- The cached path is taken for a batch into one folder (a lone session's case):
  one row lock, no order to keep. Batches into several folders read them with
  SELECT ... ORDER BY id (FOR UPDATE on PostgreSQL, in id order) and write them
  back with executemany. Folder rows are locked before usage rows, as every
  other writer does.
- Quotas are checked in order, so a batch behaves like a sequence of deliveries.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from . import pgbus
from . import schema as t
from .blobs import BlobDirectory, PreparedMessage, one_blob_params, put_many_sync
from .changes import FolderChanged
from .db import Blocking
from .errors import NotFound, OverQuota
from .indexer import PENDING_CTE_PG
from .model import Account, AppendResult, FolderRef

FOLDER_CACHE_SIZE = 50_000  # (account, folder name) entries remembered per store; emptied when full


@dataclass(frozen=True)
class Delivery:
    """One message to be written into some accounts' folders (the group-commit unit)."""

    message: PreparedMessage
    targets: tuple[tuple[Account, str], ...]  # (account, folder name)
    flags: int = 0
    keywords: tuple[str, ...] = ()
    internal_date: datetime | None = None
    tracks: tuple[int | None, ...] = ()  # per target: its read-status copy id (readstatus.py); empty: none


class StaleCache(Exception):
    """The cached path cannot decide this batch exactly (rolled back; run it again uncached)."""


class FolderCache:
    """(partition, account id, folder name) -> (folder id, UIDVALIDITY); trusted only as checked at use."""

    def __init__(self, size: int = FOLDER_CACHE_SIZE) -> None:
        self._size = size
        self._map: dict[tuple[str, int, str], tuple[int, int]] = {}
        self._lock = threading.Lock()  # writer threads of several partitions share it

    def get(self, partition: str, key: tuple[int, str]) -> tuple[int, int] | None:
        return self._map.get((partition, *key))

    def put(self, partition: str, acct: int, name: str, folder: tuple[int, int]) -> None:
        with self._lock:
            if len(self._map) >= self._size:
                self._map.clear()
            self._map[(partition, acct, name)] = folder

    def forget(self, partition: str, keys: Sequence[tuple[int, str]]) -> None:
        with self._lock:
            for acct, name in keys:
                self._map.pop((partition, acct, name), None)


def quota_error(acct: Account, usage: list[int], size: int, count: int = 1) -> OverQuota | None:
    if acct.quota_bytes and size > acct.quota_bytes:
        return OverQuota(f"message larger than the mailbox quota of {acct.address}", permanent=True)
    if acct.quota_bytes and usage[0] + size > acct.quota_bytes:
        return OverQuota(f"mailbox of {acct.address} is full", permanent=False)
    if acct.quota_messages and usage[1] + count > acct.quota_messages:
        return OverQuota(f"mailbox of {acct.address} has too many messages", permanent=False)
    return None


@dataclass(frozen=True)
class Batch:
    """What write_batch needs, prepared on the event loop."""

    partition: str
    deliveries: Sequence[Delivery]
    wanted: dict[tuple[int, str], str | Exception]  # (account id, name as given) -> normalised name or why not
    internal_dates: Sequence[datetime]  # UTC, one per delivery
    node: str  # this process's id in change notifications
    atomic: bool = False  # raise the first refusal (rolls the batch back) instead of returning it


def write_batch(conn: Connection, blocking: Blocking, b: Batch, files: BlobDirectory | None, cache: FolderCache,
                use_cache: bool) -> tuple[list[list[AppendResult | Exception]], list[FolderChanged]]:
    """One transaction for a batch of deliveries: per target an AppendResult or the refusal, and the events.

    Raises StaleCache (only when ``use_cache``) if the cached path cannot decide the batch exactly.
    """
    blob_ids = put_many_sync(conn, [d.message for d in b.deliveries], files, blocking)
    keys = sorted({(acct, nm) for (acct, _), nm in b.wanted.items() if isinstance(nm, str)})
    # One folder (one session's message, or several into one INBOX): the cached path.
    # Several take their row locks in id order and are written with executemany (_from_rows).
    folder = cache.get(b.partition, keys[0]) if use_cache and len(keys) == 1 else None
    if folder is not None and conn.dialect.name == "postgresql":
        return _cached_pg(conn, b, cache, keys[0], folder, blob_ids)
    if folder is not None:
        plan, alloc = _cached(conn, b, cache, keys[0], folder)
    else:
        plan, alloc = _from_rows(conn, b, cache, keys)
    events = [FolderChanged(FolderRef(b.partition, fid), modseq, "append") for fid, (_, modseq) in alloc.items()]
    out: list[list[AppendResult | Exception]] = []
    rows_in = []
    for d, bid, prow, when in zip(b.deliveries, blob_ids, plan, b.internal_dates):
        res_row: list[AppendResult | Exception] = []
        keywords = " ".join(d.keywords)
        for j, item in enumerate(prow):
            if isinstance(item, Exception):
                res_row.append(item)
                continue
            fid, uidv = item
            uid = alloc[fid][0]
            alloc[fid][0] += 1
            rows_in.append({"folder_id": fid, "uid": uid, "modseq": alloc[fid][1], "flags": d.flags,
                            "keywords": keywords, "internal_date": when, "size": d.message.size, "blob_id": bid,
                            "track_id": d.tracks[j] if d.tracks else None})
            res_row.append(AppendResult(uidv, uid, FolderRef(b.partition, fid, uidv)))
        out.append(res_row)
    if rows_in:
        conn.execute(_ADD_MESSAGES, rows_in)
    pgbus.notify_sync(conn, b.node, events)  # delivered at commit only
    return out, events


Plan = list[list[tuple[int, int] | Exception]]  # per delivery, per target: (folder id, UIDVALIDITY) or the refusal
Alloc = dict[int, list[int]]  # folder id -> [first new UID, the new MODSEQ]


# The cached path's statements, built once (building and keying a statement per batch cost more than running it).
_fc, _uc = t.folders.c, t.mailbox_usage.c
_MOVE_FOLDER = (update(t.folders).where(_fc.id == bindparam("f_id"))
                .values(uidnext=_fc.uidnext + bindparam("f_n"), highestmodseq=_fc.highestmodseq + 1)
                .returning(_fc.uidvalidity, _fc.uidnext, _fc.highestmodseq))
_ADD_USAGE = (update(t.mailbox_usage).where(_uc.account_id == bindparam("u_id"))
              .values(bytes=_uc.bytes + bindparam("u_b"), messages=_uc.messages + bindparam("u_m"))
              .returning(_uc.bytes, _uc.messages))
_ADD_MESSAGES = insert(t.messages)


def _cached(conn: Connection, b: Batch, cache: FolderCache, key: tuple[int, str],
            folder: tuple[int, int]) -> tuple[Plan, Alloc]:
    """Every target accepted into one cached folder: two UPDATEs that allocate and return, then checks.

    The folder row moves first (its lock first, as every writer takes it), then the
    usage row; what they return checks the cache and the quota. Anything this path
    cannot decide exactly raises StaleCache and the transaction is rolled back.
    """
    fid, uidv = folder
    accounts = _cached_targets(b)
    plan: Plan = [[folder] * len(d.targets) for d in b.deliveries]
    n, size = len(accounts), sum(s for _, s in accounts)
    if not n:
        return plan, {}
    moved = conn.execute(_MOVE_FOLDER, {"f_id": fid, "f_n": n}).first()
    if moved is None or moved.uidvalidity != uidv:
        cache.forget(b.partition, [key])
        raise StaleCache("the cached folder was deleted or renamed")
    # Relative update: correct even if another node changed usage meanwhile.
    after = conn.execute(_ADD_USAGE, {"u_id": key[0], "u_b": size, "u_m": n}).first()
    _check_quota(accounts, after)
    return plan, {fid: [moved.uidnext - n, moved.highestmodseq]}


def _cached_targets(b: Batch) -> list[tuple[Account, int]]:
    """(account, message size) of each target, in order; StaleCache when one is refused (decided uncached)."""
    out = []
    for d in b.deliveries:
        for acct, fname in d.targets:
            if isinstance(b.wanted[(acct.id, fname)], Exception):
                raise StaleCache("a refusal is decided on the uncached path")
            out.append((acct, d.message.size))
    return out


def _check_quota(accounts: list[tuple[Account, int]], after) -> None:
    """The quota, in order, from the usage before this batch (``after``: the usage row as updated, or None)."""
    n, size = len(accounts), sum(s for _, s in accounts)
    used = [int(after.bytes) - size, int(after.messages) - n] if after is not None and after.bytes is not None \
        else [0, 0]
    for acct, msg_size in accounts:
        if quota_error(acct, used, msg_size) is not None:
            raise StaleCache("a refusal is decided from the folder and usage rows")
        used[0] += msg_size
        used[1] += 1


# The cached path on PostgreSQL in one statement (four round trips become one): the folder row
# moves first (its lock first: the usage row's UPDATE joins it, so cannot run before it), then the
# usage row, then the message rows numbered from the UIDs it allocated, and the change notification
# (sent at commit only). No row when the cached folder is gone or has a new UIDVALIDITY.
_CACHED_PG = text(
    "WITH f AS (UPDATE folders SET uidnext = uidnext + :n, highestmodseq = highestmodseq + 1"
    " WHERE id = :fid RETURNING uidvalidity, uidnext, highestmodseq),"
    " u AS (UPDATE mailbox_usage SET bytes = mailbox_usage.bytes + :size, messages = mailbox_usage.messages + :n"
    " FROM f WHERE mailbox_usage.account_id = :acct AND f.uidvalidity = :uidv"
    " RETURNING mailbox_usage.bytes, mailbox_usage.messages),"
    " m AS (INSERT INTO messages (folder_id, uid, modseq, flags, keywords, internal_date, size, blob_id, track_id)"
    " SELECT :fid, f.uidnext - :n + r.k - 1, f.highestmodseq, r.flags, r.keywords, r.internal_date, r.size,"
    " r.blob_id, r.track_id FROM f, unnest(CAST(:flags AS integer[]), CAST(:keywords AS text[]),"
    " CAST(:dates AS timestamptz[]), CAST(:sizes AS bigint[]), CAST(:blobs AS bigint[]), CAST(:tracks AS bigint[]))"
    " WITH ORDINALITY AS r(flags, keywords, internal_date, size, blob_id, track_id, k)"
    " WHERE f.uidvalidity = :uidv)"
    " SELECT f.uidvalidity, f.uidnext, f.highestmodseq, u.bytes, u.messages,"
    " pg_notify(:channel, CAST(:head AS text) || f.highestmodseq || CAST(:tail AS text)) FROM f LEFT JOIN u ON true")


def _cached_pg(conn: Connection, b: Batch, cache: FolderCache, key: tuple[int, str], folder: tuple[int, int],
               blob_ids: list[int]) -> tuple[list[list[AppendResult | Exception]], list[FolderChanged]]:
    """`_cached` and the message rows and notification of write_batch, as one statement (PostgreSQL)."""
    fid, uidv = folder
    accounts = _cached_targets(b)
    n, size = len(accounts), sum(s for _, s in accounts)
    rows: dict[str, list] = {"flags": [], "keywords": [], "dates": [], "sizes": [], "blobs": [], "tracks": []}
    for d, bid, when in zip(b.deliveries, blob_ids, b.internal_dates):
        for j in range(len(d.targets)):
            rows["flags"].append(int(d.flags))  # an IntFlag iterates: asyncpg would read it as an array
            rows["keywords"].append(" ".join(d.keywords))
            rows["dates"].append(when)
            rows["sizes"].append(d.message.size)
            rows["blobs"].append(bid)
            rows["tracks"].append(d.tracks[j] if d.tracks else None)
    out: list[list[AppendResult | Exception]] = [[] for _ in b.deliveries]
    if not n:
        return out, []
    got = conn.execute(_CACHED_PG, {"n": n, "fid": fid, "size": size, "acct": key[0], "uidv": uidv, **rows,
                                    "channel": pgbus.CHANNEL, "head": f"{b.node}:{b.partition}:{fid}:",
                                    "tail": ":append"}).first()
    if got is None or got.uidvalidity != uidv:
        cache.forget(b.partition, [key])
        raise StaleCache("the cached folder was deleted or renamed")
    _check_quota(accounts, got)
    uid = got.uidnext - n
    ref = FolderRef(b.partition, fid, uidv)
    for row, d in zip(out, b.deliveries):
        for _ in d.targets:
            row.append(AppendResult(uidv, uid, ref))
            uid += 1
    return out, [FolderChanged(FolderRef(b.partition, fid), got.highestmodseq, "append")]


def _from_rows(conn: Connection, b: Batch, cache: FolderCache, keys: list[tuple[int, str]]) -> tuple[Plan, Alloc]:
    """Read the folder rows (locked in id order on PostgreSQL) and the usage, decide each target, write back."""
    fc, uc = t.folders.c, t.mailbox_usage.c
    acct_ids = sorted({a for a, _ in b.wanted})
    found: dict[tuple[int, str], tuple[int, int]] = {}
    heads: dict[int, tuple[int, int]] = {}  # folder id -> (uidnext, highestmodseq) as read
    if keys:
        q = (select(fc.id, fc.account_id, fc.name, fc.uidvalidity, fc.uidnext, fc.highestmodseq)
             .where(and_(fc.account_id.in_(acct_ids), fc.name.in_({n for _, n in keys}))).order_by(fc.id))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()  # other nodes append to these folders too; lock in id order
        for r in conn.execute(q).all():
            found[(r.account_id, r.name)] = (r.id, r.uidvalidity)
            heads[r.id] = (r.uidnext, r.highestmodseq)
            cache.put(b.partition, r.account_id, r.name, (r.id, r.uidvalidity))
        cache.forget(b.partition, [k for k in keys if k not in found])
    usage: dict[int, list[int]] = {i: [0, 0] for i in acct_ids}
    for r in conn.execute(select(uc.account_id, uc.bytes, uc.messages).where(uc.account_id.in_(acct_ids))).all():
        usage[r.account_id] = [int(r.bytes), int(r.messages)]
    added: dict[int, list[int]] = {}
    plan: Plan = []
    per_folder: dict[int, int] = {}
    for d in b.deliveries:  # quotas in order, so a batch behaves like a sequence
        row: list[tuple[int, int] | Exception] = []
        for acct, fname in d.targets:
            nm = b.wanted[(acct.id, fname)]
            if isinstance(nm, Exception):
                row.append(nm)
                continue
            f = found.get((acct.id, nm))
            if f is None:
                row.append(NotFound(f"no folder {fname}"))
                continue
            err = quota_error(acct, usage[acct.id], d.message.size)
            if err is not None:
                row.append(err)
                continue
            usage[acct.id][0] += d.message.size
            usage[acct.id][1] += 1
            a = added.setdefault(acct.id, [0, 0])
            a[0] += d.message.size
            a[1] += 1
            per_folder[f[0]] = per_folder.get(f[0], 0) + 1
            row.append(f)
        plan.append(row)
    if b.atomic and (refused := next((x for row in plan for x in row if isinstance(x, Exception)), None)):
        raise refused
    # Each folder's UIDNEXT moves by its count, one new MODSEQ per folder.
    alloc = {fid: [heads[fid][0], heads[fid][1] + 1] for fid in per_folder}
    if alloc:
        conn.execute(update(t.folders).where(fc.id == bindparam("b_id")).values(
            uidnext=bindparam("b_next"), highestmodseq=bindparam("b_hm")),
            [{"b_id": fid, "b_next": alloc[fid][0] + per_folder[fid], "b_hm": alloc[fid][1]}
             for fid in sorted(alloc)])
    if added:
        # Relative updates: correct even if another node changed usage meanwhile.
        conn.execute(update(t.mailbox_usage).where(uc.account_id == bindparam("b_id")).values(
            bytes=uc.bytes + bindparam("b_bytes"), messages=uc.messages + bindparam("b_msgs")),
            [{"b_id": i, "b_bytes": by, "b_msgs": m} for i, (by, m) in sorted(added.items())])
    return plan, alloc


# A lone message into a cached folder, on PostgreSQL, as ONE statement run outside a transaction
# (the statement is its own transaction: no BEGIN and no COMMIT round trip, so 4 become 1). Nothing
# may be left half done, so every check is in the statement and a declined one raises, which rolls
# the whole statement back: the folder must still be the cached one (id and UIDVALIDITY), the quota
# must allow the message, the body must be new (a stored hash is referenced on the ordinary path, with
# its row held against cleanup). The folder row moves first, then the usage row (as every writer
# orders its locks); the body and its pending-index row need the usage row, the message row needs both.
# PostgreSQL answers a statement only after its commit (asyncpg returns at ReadyForQuery), so the
# 250 still follows a durable commit. DECLINED reaches the client as the text of a failed cast.
DECLINED = "postroom:one-statement-declined"
_ONE_PG = text(
    "WITH f AS (UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
    " WHERE id = :fid AND uidvalidity = :uidv RETURNING uidvalidity, uidnext, highestmodseq),"
    " u AS (UPDATE mailbox_usage SET bytes = mailbox_usage.bytes + CAST(:size AS bigint),"
    " messages = mailbox_usage.messages + 1 FROM f WHERE mailbox_usage.account_id = :acct"
    " AND (CAST(:qb AS bigint) = 0 OR mailbox_usage.bytes + CAST(:size AS bigint) <= CAST(:qb AS bigint))"
    " AND (CAST(:qm AS bigint) = 0 OR mailbox_usage.messages + 1 <= CAST(:qm AS bigint))"
    " RETURNING mailbox_usage.account_id),"
    " b AS (INSERT INTO blobs (sha256, size, data, parsed, sent_at)"
    " SELECT :sha256, CAST(:size AS bigint), :data, :parsed, CAST(:sent_at AS timestamptz) FROM u"
    " ON CONFLICT (sha256) DO NOTHING RETURNING id)," + PENDING_CTE_PG + ","
    " m AS (INSERT INTO messages (folder_id, uid, modseq, flags, keywords, internal_date, size, blob_id, track_id)"
    " SELECT :fid, f.uidnext - 1, f.highestmodseq, CAST(:flags AS integer), CAST(:keywords AS text),"
    " CAST(:date AS timestamptz), CAST(:size AS bigint), b.id, CAST(:track AS bigint) FROM f, b RETURNING uid)"
    " SELECT CAST(COALESCE(CAST(m.uid AS text), CAST(:declined AS text)) AS bigint) AS uid, f.highestmodseq,"
    " pg_notify(:channel, CAST(:head AS text) || f.highestmodseq || CAST(:tail AS text))"
    " FROM (SELECT 1) AS one LEFT JOIN m ON true LEFT JOIN f ON true")


def lone_cached(b: Batch, cache: FolderCache) -> tuple[tuple[int, str], tuple[int, int]] | None:
    """(key, cached folder) when the batch is one message into one cached folder, else None."""
    if b.atomic or len(b.deliveries) != 1 or len(b.deliveries[0].targets) != 1:
        return None
    acct, fname = b.deliveries[0].targets[0]
    name = b.wanted[(acct.id, fname)]
    if isinstance(name, Exception):
        return None
    folder = cache.get(b.partition, (acct.id, name))
    return None if folder is None else ((acct.id, name), folder)


def one_pg(conn: Connection, b: Batch, key: tuple[int, str], folder: tuple[int, int]
           ) -> tuple[list[list[AppendResult | Exception]], list[FolderChanged]] | None:
    """Write the batch's one message as one self-committing statement (see _ONE_PG); None if declined.

    ``conn`` must be outside a transaction (AUTOCOMMIT): the statement commits itself, or,
    declined or failed, leaves nothing behind. A declined batch goes the ordinary way.
    """
    d = b.deliveries[0]
    acct, _ = d.targets[0]
    p = d.message
    fid, uidv = folder
    try:
        got = conn.execute(_ONE_PG, {
            **one_blob_params(p), "fid": fid, "uidv": uidv, "acct": key[0], "qb": acct.quota_bytes,
            "qm": acct.quota_messages, "flags": int(d.flags), "keywords": " ".join(d.keywords),
            "date": b.internal_dates[0], "track": d.tracks[0] if d.tracks else None, "declined": DECLINED,
            "channel": pgbus.CHANNEL, "head": f"{b.node}:{b.partition}:{fid}:", "tail": ":append"}).one()
    except DBAPIError as exc:
        if DECLINED in str(exc.orig):
            return None
        raise
    ref = FolderRef(b.partition, fid, uidv)
    return [[AppendResult(uidv, got.uid, ref)]], [FolderChanged(FolderRef(b.partition, fid), got.highestmodseq,
                                                                 "append")]
