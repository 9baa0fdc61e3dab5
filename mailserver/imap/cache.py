"""In-process caches: what FETCH and SEARCH derive from immutable blobs (LRU), and recently selected folders' message state.

Blobs never change once written, so an entry keyed by (partition, blob_id) never goes stale;
the caches are bounded (bytes for the rendered entries, count for part trees) and shared by
every session of the server.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from mailboxes import folderstate
from mailboxes.mime import BodyPart, ParsedHead, ParsedMessage, head_from_json, header_fields
from mailboxes.model import Changes, FixedFacts, Folder, FolderRef
from mailboxes.store import Store

from .render import bodystructure_bytes, envelope_bytes
from .selected import SelectedMailbox
from .sorting import facts_of

RENDER_CACHE_BYTES = 64 << 20  # rendered entries, all sessions together
PART_TREE_CACHE = 2048  # parsed part trees kept for BODY[part] / BINARY
BINARY_SIZES = 4096  # decoded sizes of large encoded parts kept for BINARY.SIZE (fetch.decode_large_parts)
LOAD_CHUNK = 1000  # stored parses read and decoded per step on a cache miss (10,000 at once held the loop)
_ENTRY_OVERHEAD = 200
MAX_FIELD_LISTS = 4  # distinct HEADER.FIELDS lists remembered per message (clients use one or two)


_NEEDS_TREE = frozenset({"body", "bodystructure"})


ADDRESS_KEYS = ("from", "to", "cc", "bcc")  # RFC 3501 §6.4.4 keys matched against the envelope


def _address_texts(env) -> tuple[tuple[str, str], ...]:
    """(key, folded "name <mailbox@host>") per envelope address; a group's name stands alone."""
    out = []
    for key, addrs in zip(ADDRESS_KEYS, (env.from_, env.to, env.cc, env.bcc)):
        for a in addrs:
            if a.addr_spec is not None:
                name = a.name_decoded or a.name
                out.append((key, fold(f"{name} <{a.addr_spec}>" if name else a.addr_spec)))
            elif a.mailbox:  # group start: the group's display name
                out.append((key, fold(a.mailbox)))
    return tuple(out)


def fold(text: str) -> str:
    """Case- and width-insensitive form for substring tests (NFKC + casefold, as the index does)."""
    return unicodedata.normalize("NFKC", text).casefold()


class Rendered:
    """One blob's FETCH values, rendered on first use, and the few parsed facts SEARCH and BODY[HEADER] need."""

    __slots__ = ("_fields", "addresses", "body", "bodystructure", "charged", "envelope", "facts", "header",
                 "header_end", "headers", "sent")

    def __init__(self, p: ParsedMessage | ParsedHead) -> None:
        self.envelope: bytes | None = None
        self.body: bytes | None = None  # BODY (non-extensible, RFC 3501 §7.4.2)
        self.bodystructure: bytes | None = None
        self.header_end = p.header_end  # end of the top-level header, blank line included
        # Decoded SEARCH headers (mime.SEARCH_HEADERS), folded once for substring tests.
        self.headers = tuple((k, fold(v)) for k, v in p.headers_decoded)
        self.addresses = _address_texts(p.envelope)  # FROM/TO/CC/BCC keys, folded
        self.sent = p.envelope.date_parsed  # Date: header, for SENTBEFORE / SENTON / SENTSINCE
        self.facts = facts_of(p.envelope, p.headers_decoded)  # what SORT and THREAD compare (sorting.py)
        self.charged = 0  # what the cache counted for it
        self.header: bytes | None = None  # the top-level header block, once a FETCH read it
        self._fields: dict[tuple[str, tuple[str, ...]], bytes] | None = None  # HEADER.FIELDS answers

    def fields(self, text: str, names: tuple[str, ...], header: bytes) -> bytes:
        """BODY[HEADER.FIELDS (names)] / .NOT of the top-level header, remembered per field list."""
        key = (text, names)
        if self._fields is None:
            self._fields = {}
        out = self._fields.get(key)
        if out is None:
            out = header_fields(header, names, exclude=text == "HEADER.FIELDS.NOT")
            if len(self._fields) < MAX_FIELD_LISTS:
                self._fields[key] = out
        return out

    def fill(self, p: ParsedMessage | ParsedHead, want: frozenset[str]) -> None:
        if "envelope" in want and self.envelope is None:
            self.envelope = envelope_bytes(p.envelope)
        if "body" in want and self.body is None:
            self.body = bodystructure_bytes(p.body, False)
        if "bodystructure" in want and self.bodystructure is None:
            self.bodystructure = bodystructure_bytes(p.body, True)

    def has(self, want: frozenset[str]) -> bool:
        return all(getattr(self, w) is not None for w in want)

    def cost(self) -> int:
        return (_ENTRY_OVERHEAD + sum(len(x) for x in (self.envelope, self.body, self.bodystructure, self.header) if x)
                + sum(len(k) + len(v) for k, v in self.headers) + self.facts.cost()
                + sum(len(v) + 8 for _, v in self.addresses)
                + (sum(len(v) + 100 for v in self._fields.values()) if self._fields else 0))


NOTHING: frozenset[str] = frozenset()
RENDERABLE = frozenset({"envelope", "body", "bodystructure"})


class RenderCache:
    """Rendered entries by (partition, blob_id), filled from the store's stored parse on a miss."""

    def __init__(self, store: Store, max_bytes: int = RENDER_CACHE_BYTES, max_trees: int = PART_TREE_CACHE) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.max_trees = max_trees
        self._entries: OrderedDict[tuple[str, int], Rendered] = OrderedDict()
        self._bytes = 0
        self._trees: OrderedDict[tuple[str, int], BodyPart] = OrderedDict()
        self._binary_sizes: OrderedDict[tuple[str, int, tuple[int, ...]], int] = OrderedDict()
        self.hits = self.misses = 0

    async def rendered(self, partition: str, blob_ids: Iterable[int],
                       want: frozenset[str] = NOTHING) -> dict[int, Rendered]:
        """Entries for ``blob_ids`` with the ``want`` values (envelope, body, bodystructure) rendered."""
        out: dict[int, Rendered] = {}
        missing: list[int] = []
        entries = self._entries
        for bid in blob_ids:
            key = (partition, bid)
            r = entries.get(key)
            if r is None or (want and not r.has(want)):
                missing.append(bid)
            else:
                entries.move_to_end(key)
                out[bid] = r
        self.hits += len(out)
        if missing:
            self.misses += len(missing)
            # ENVELOPE and SEARCH need only the top of the parse: skip building part trees.
            load = ParsedMessage.from_json if want & _NEEDS_TREE else head_from_json
            for k in range(0, len(missing), LOAD_CHUNK):  # the loop serves others between chunks
                for bid, doc in (await self.store.parsed(partition, missing[k:k + LOAD_CHUNK])).items():
                    p = load(doc)
                    r = entries.get((partition, bid)) or Rendered(p)
                    r.fill(p, want)
                    out[bid] = r
                    self._put(partition, bid, r)
        return out

    async def trees(self, partition: str, blob_ids: Iterable[int]) -> dict[int, BodyPart]:
        """Part trees (offsets into the raw message) for section fetches."""
        out: dict[int, BodyPart] = {}
        missing: list[int] = []
        for bid in blob_ids:
            t = self._trees.get((partition, bid))
            if t is None:
                missing.append(bid)
            else:
                self._trees.move_to_end((partition, bid))
                out[bid] = t
        for k in range(0, len(missing), LOAD_CHUNK):
            for bid, doc in (await self.store.parsed(partition, missing[k:k + LOAD_CHUNK])).items():
                p = ParsedMessage.from_json(doc)
                out[bid] = p.body
                self._put_tree(partition, bid, p.body)
                if (partition, bid) not in self._entries:
                    self._put(partition, bid, Rendered(p))
        return out

    def binary_size(self, partition: str, bid: int, part: tuple[int, ...]) -> int | None:
        """The decoded size of a large part found earlier (a blob's bytes never change), or None."""
        key = (partition, bid, part)
        size = self._binary_sizes.get(key)
        if size is not None:
            self._binary_sizes.move_to_end(key)
        return size

    def keep_binary_size(self, partition: str, bid: int, part: tuple[int, ...], size: int) -> None:
        self._binary_sizes[(partition, bid, part)] = size
        self._binary_sizes.move_to_end((partition, bid, part))
        while len(self._binary_sizes) > BINARY_SIZES:
            self._binary_sizes.popitem(last=False)

    def keep_header(self, partition: str, bid: int, raw: bytes) -> None:
        """Remember a message's top-level header (HEADER / HEADER.FIELDS fetches then need no blob read)."""
        r = self._entries.get((partition, bid))
        if r is not None:
            r.header = raw[:r.header_end]
            self._put(partition, bid, r)

    def _put(self, partition: str, bid: int, r: Rendered) -> None:
        key = (partition, bid)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.charged
        r.charged = r.cost()
        self._entries[key] = r
        self._bytes += r.charged
        while self._bytes > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.charged

    def _put_tree(self, partition: str, bid: int, body: BodyPart) -> None:
        self._trees[(partition, bid)] = body
        self._trees.move_to_end((partition, bid))
        while len(self._trees) > self.max_trees:
            self._trees.popitem(last=False)

    @property
    def size_bytes(self) -> int:
        return self._bytes


SNAPSHOT_MESSAGES = 500_000  # messages kept for quick SELECTs, all folders together (state ~20 bytes, facts ~150)
FACTS_BATCH = 2000  # UIDs whose facts (date, size, blob) one read brings in; the loop serves others between


class Snapshot(NamedTuple):
    """A folder as a SELECT needs it: the state columns in UID order. Shared by sessions: copy before changing."""

    folder: Folder
    recent_uid: int  # folders.recent_uid as read with the rows (RFC 3501 §2.3.2)
    modseq: int  # the MODSEQ the columns are current to
    uids: list[int]
    modseqs: list[int]
    flags: bytes  # system flag bits, one byte a message
    kws: dict[int, frozenset[str]]  # UID -> keywords, for those that have any
    keywords: frozenset[str]  # every keyword in use (the FLAGS response)
    facts: dict[int, FixedFacts]  # what views read on demand, shared by them (added to, never changed)

    @property
    def state(self) -> tuple[list[int], list[int], bytes, dict[int, frozenset[str]]]:
        return self.uids, self.modseqs, self.flags, self.kws


class FolderSnapshots:
    """The last known state of recently selected folders' messages, brought up to date with changes_since.

    A SELECT of a folder someone selected recently reads only what changed since (RFC 7162
    MODSEQ) instead of every row, and the facts (internal date, size, blob) that views read
    on demand are kept with it for the next views of the folder. Keyed by FolderRef, whose id is never reused
    (mailboxes.identity); an entry is used only while the folder's UIDVALIDITY, its
    generation, is the one it was read under, and every load reads the folder row again
    (with the changes, in one transaction) before using it.
    """

    def __init__(self, store: Store, max_messages: int = SNAPSHOT_MESSAGES) -> None:
        self.store = store
        self.max_messages = max_messages
        self._entries: OrderedDict[FolderRef, Snapshot] = OrderedDict()
        self._count = 0

    async def load(self, ref: FolderRef) -> Snapshot:
        """The folder now: one read of what changed since the cached entry, or of every message's state."""
        entry = self._entries.get(ref)
        if entry is not None:
            fc = await self.store.folder_changes(ref, entry.modseq)
            if fc.folder.uidvalidity == entry.folder.uidvalidity:
                snap = entry._replace(folder=fc.folder, recent_uid=fc.recent_uid,
                                      modseq=max(entry.modseq, fc.changes.highestmodseq))
                if fc.changes.changed or fc.changes.vanished:
                    snap = _patched(snap, fc.changes)
                    self.store.state_read(ref, snap.folder.uidvalidity, snap.modseq, _columns(snap),
                                          len(fc.changes.changed) + len(fc.changes.vanished))
                self._put(ref, snap)
                return snap
        got = await self.store.listing_state(ref)
        snap = Snapshot(got.folder, got.recent_uid, got.folder.highestmodseq, got.uids, got.modseqs, got.flags,
                        got.keywords, got.in_use, {})
        self._put(ref, snap)
        return snap

    def _put(self, ref: FolderRef, entry: Snapshot) -> None:
        old = self._entries.pop(ref, None)
        if old is not None:
            self._count -= len(old.uids)
        if len(entry.uids) > self.max_messages:
            return
        self._entries[ref] = entry
        self._count += len(entry.uids)
        while self._count > self.max_messages and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self._count -= len(dropped.uids)


def _columns(snap: Snapshot) -> folderstate.Columns:
    return folderstate.Columns(snap.uids, snap.modseqs, snap.flags, snap.kws, snap.keywords)


def _patched(snap: Snapshot, changes: Changes) -> Snapshot:
    """``snap`` with ``changes`` folded in; new columns, the shared ones stay as they were."""
    facts = snap.facts
    for uid in changes.vanished:
        facts.pop(uid, None)
    for m in changes.changed:
        if m.uid not in facts:
            facts[m.uid] = FixedFacts(m.internal_date, m.size, m.blob_id)
    c = folderstate.fold(_columns(snap), changes.changed, changes.vanished)
    return snap._replace(uids=c.uids, modseqs=c.modseqs, flags=c.flags, kws=c.kws, keywords=c.keywords)


async def load_facts(store: Store, ref: FolderRef, view: SelectedMailbox, indexes: Iterable[int]) -> None:
    """Read the facts (internal date, size, blob) that ``view`` lacks for ``indexes`` (ascending), in batches."""
    missing = view.without_facts(indexes)
    for k in range(0, len(missing), FACTS_BATCH):
        view.add_facts(await store.facts(ref, missing[k:k + FACTS_BATCH]))
