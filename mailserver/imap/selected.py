"""The selected mailbox as the client knows it: UID ↔ sequence map, \\Recent, and the untagged updates due.

Implementation notes (invariants)
- The view holds exactly what the client has been told: ``uids[i]`` is message ``i + 1``.
  Changes from elsewhere reach it only through ``apply``, whose returned lines the caller
  must write before its tagged response; so sequence numbers never drift from the client's.
- RFC 3501 §7.4.1: an EXPUNGE (or VANISHED, RFC 7162 §3.2.10) is never sent while answering
  FETCH, STORE or SEARCH. A message expunged elsewhere stays in the view as a "ghost" (its
  last known flags kept, RFC 2180 §4.1) until a command that allows expunges ends.
- Own changes come back from the store with the MODSEQ we already recorded; an update whose
  MODSEQ is not newer than the view's copy is not announced twice.
- The view is columns (UIDs, MODSEQs, a byte of system flags each, keywords only where there
  are any), read at SELECT without the facts that never change for a UID (internal date, size,
  blob): those come in on demand (``add_facts``, loaded by cache.load_facts before a FETCH,
  SEARCH or SORT that needs them), shared by the views of one folder and generation, and need
  no invalidation (FolderSnapshots drops an expunged UID's).
  A message expunged before its facts were read answers as an empty message (``GONE``, RFC 2180 §4.1.3).
- No I/O: this is plain data in, response bytes out.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from datetime import UTC, datetime

from mailboxes.model import Changes, FixedFacts, MessageMeta, flag_names

from .commands import SequenceSet
from .responses import flag_list

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
NO_KEYWORDS: frozenset[str] = frozenset()
GONE = FixedFacts(datetime(1970, 1, 1, tzinfo=UTC), 0, 0)  # blob 0 is never stored: an empty message
_SEEN_BYTE = bytes(b & 1 for b in range(256))  # flags.translate(): 1 where \Seen is set

_flag_cache: dict[tuple[int, frozenset[str], bool], bytes] = {}
_FLAG_CACHE_MAX = 4096


def flag_bytes(flags: int, keywords: frozenset[str], recent: bool = False) -> bytes:
    """``(\\Seen $Label1)`` for a message's flag bits and keywords, \\Recent added when it is recent for this session."""
    key = (flags, keywords, recent)
    out = _flag_cache.get(key)
    if out is None:
        names = flag_names(flags, keywords)
        if recent:
            names.append("\\Recent")
        out = flag_list(names)
        if len(_flag_cache) < _FLAG_CACHE_MAX:
            _flag_cache[key] = out
    return out


def flags_bytes(meta: MessageMeta, recent: bool = False) -> bytes:
    """``(\\Seen $Label1)`` for a message, \\Recent added when it is recent for this session."""
    return flag_bytes(meta.flags, meta.keywords, recent)


class BadSequence(ValueError):
    """A message sequence number beyond EXISTS (RFC 3501 §9 seq-number: BAD)."""


class SelectedMailbox:
    """One session's view of its selected folder (pymap's "selected mailbox" idea, our own code)."""

    def __init__(self, metas: Iterable[MessageMeta] = (), *, modseq: int, uidvalidity: int, uidnext: int,
                 read_only: bool, recent: set[int] | None = None,
                 state: tuple[list[int], list[int], bytes, dict[int, frozenset[str]]] | None = None,
                 keywords: Iterable[str] | None = None, facts: dict[int, FixedFacts] | None = None) -> None:
        """From ``metas`` (facts included), or from ``state``: the UID, MODSEQ, flag and keyword columns (copied).

        ``facts``: the folder's facts known so far, shared with other views of it (FolderSnapshots):
        added to, never changed, since a UID's facts never change.
        """
        if state is None:
            metas = list(metas)
            state = ([m.uid for m in metas], [m.modseq for m in metas], bytes(m.flags for m in metas),
                     {m.uid: m.keywords for m in metas if m.keywords})
            self.facts: dict[int, FixedFacts] = {m.uid: FixedFacts(m.internal_date, m.size, m.blob_id)
                                                   for m in metas}
        else:
            self.facts = facts if facts is not None else {}
        uids, modseqs, flags, kws = state
        self.uids = list(uids)
        self.modseqs = list(modseqs)
        self.flags = bytearray(flags)
        self.kws = dict(kws)  # UID -> keywords, for the UIDs that have any
        self.modseq = modseq  # highest MODSEQ the view has caught up with
        self.uidvalidity = uidvalidity
        self.uidnext = max(uidnext, (self.uids[-1] + 1) if self.uids else 1)
        self.read_only = read_only
        self.recent: set[int] = recent or set()
        self.ghosts: set[int] = set()  # expunged elsewhere, not yet announced
        self.keywords: set[str] = set()
        if keywords is not None:
            self.keywords.update(keywords)
        else:
            for k in self.kws.values():
                self.keywords.update(k)

    # --- lookups -------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def index_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def resolve(self, seqs: SequenceSet, *, uid: bool, saved: Iterable[int] = ()) -> list[int]:
        """Indexes (seq - 1) named by a sequence or UID set, ascending; ``$`` is the saved UIDs (RFC 5182)."""
        if seqs.saved:
            return [i for u in sorted(set(saved)) if (i := self.index_of(u)) is not None]
        out: list[int] = []
        if uid:
            # RFC 3501 §6.4.8: "*" is the highest UID in use; UIDs not in use are ignored.
            top = self.uids[-1] if self.uids else 0
            for lo, hi in seqs.normalised(top):
                out.extend(range(bisect.bisect_left(self.uids, lo), bisect.bisect_right(self.uids, hi)))
            return out
        # A number beyond EXISTS is an error (RFC 3501 §9 seq-number); a range ending in "*" is
        # taken as far as it goes, so "1:*" in an empty mailbox is simply nothing.
        if any(a is not None and b is not None and max(a, b) > len(self.uids) for a, b in seqs.ranges):
            raise BadSequence("message sequence number out of range")
        for lo, hi in seqs.normalised(len(self.uids)):
            out.extend(range(lo - 1, hi))
        return out

    def keywords_of(self, i: int) -> frozenset[str]:
        return self.kws.get(self.uids[i], NO_KEYWORDS)

    def flags_of(self, i: int) -> bytes:
        uid = self.uids[i]
        return flag_bytes(self.flags[i], self.kws.get(uid, NO_KEYWORDS), uid in self.recent)

    def first_unseen(self) -> int | None:
        i = self.flags.translate(_SEEN_BYTE).find(0)
        return None if i < 0 else i + 1

    def flags_response(self) -> bytes:
        """``* FLAGS (...)``: the system flags and the keywords in use (RFC 3501 §7.2.6)."""
        return b"* FLAGS " + flag_list([*SYSTEM_FLAGS, *sorted(self.keywords)]) + b"\r\n"

    # --- facts read on demand ----------------------------------------------------------------

    def fact(self, i: int) -> FixedFacts:
        """Internal date, size and blob of message ``i`` (loaded before; GONE if it was expunged unread)."""
        return self.facts.get(self.uids[i], GONE)

    def without_facts(self, indexes: Iterable[int]) -> list[int]:
        """The UIDs (ascending when ``indexes`` are) among ``indexes`` whose facts are not loaded yet."""
        facts, uids = self.facts, self.uids
        return [u for i in indexes if (u := uids[i]) not in facts]

    def add_facts(self, facts: dict[int, FixedFacts]) -> None:
        """Facts read for this view (a range read brings its neighbours too: messages of the folder all the same)."""
        self.facts.update(facts)

    def _set(self, i: int, m: MessageMeta) -> None:
        self.modseqs[i] = m.modseq
        self.flags[i] = m.flags & 0xFF
        if m.keywords:
            self.kws[m.uid] = m.keywords
        else:
            self.kws.pop(m.uid, None)
        if m.uid not in self.facts:
            self.facts[m.uid] = FixedFacts(m.internal_date, m.size, m.blob_id)

    # --- own changes ---------------------------------------------------------------------

    def update(self, metas: list[MessageMeta]) -> list[int]:
        """Record messages whose flags this session changed; their indexes (ghosts skipped).

        The store gives one write one new MODSEQ, one above the folder's previous highest. If
        that is one above the view's, nothing else happened in between and the view is caught
        up without asking the store again (10,000 changed rows are not read back).
        """
        out = []
        index_of = self.index_of
        for m in metas:
            i = index_of(m.uid)
            if i is not None:
                self._set(i, m)
                out.append(i)
        if metas and all(m.modseq == self.modseq + 1 for m in (metas[0], metas[-1])):
            self.modseq += 1
        return out

    def new_keywords(self, metas: Iterable[MessageMeta]) -> bool:
        """Whether ``metas`` use keywords the client has not seen in a FLAGS response yet."""
        grew = False
        for m in metas:
            if m.keywords and not m.keywords <= self.keywords:
                self.keywords.update(m.keywords)
                grew = True
        return grew

    def expunge(self, uids: Iterable[int], *, vanished: bool) -> list[bytes]:
        """Remove messages now and return their EXPUNGE lines (or one VANISHED line, RFC 7162 §3.2.10)."""
        gone = sorted(u for u in set(uids) if self.index_of(u) is not None)
        if not gone:
            return []
        self.ghosts.difference_update(gone)
        self.recent.difference_update(gone)
        if vanished:
            lines = [b"* VANISHED " + bytes(SequenceSet.from_ints(gone)) + b"\r\n"]
        else:
            # RFC 3501 §7.4.1: each EXPUNGE renumbers the messages after it; ascending order,
            # the k-th removal (0-based) is at its original number minus k.
            lines = [b"* %d EXPUNGE\r\n" % (self.index_of(u) + 1 - k) for k, u in enumerate(gone)]  # type: ignore[operator]
        drop = set(gone)
        keep = [i for i, u in enumerate(self.uids) if u not in drop]
        self.uids = [self.uids[i] for i in keep]
        self.modseqs = [self.modseqs[i] for i in keep]
        flags = self.flags
        self.flags = bytearray(bytes(flags[i] for i in keep))
        for u in gone:
            self.kws.pop(u, None)  # the facts may be shared: FolderSnapshots drops them when it learns of the expunge
        return lines

    # --- changes from elsewhere -------------------------------------------------------------

    def apply(self, changes: Changes, *, allow_expunge: bool, condstore: bool, qresync: bool,
              claim_recent: Callable[[list[int]], set[int]] | None = None) -> list[bytes]:
        """Fold in what changed since the view's MODSEQ; the untagged lines to send now.

        Order: FLAGS (new keywords), FETCH for flag changes (numbered in the view as the client
        knows it), then EXPUNGE/VANISHED when allowed, then EXISTS and RECENT for new mail
        (``claim_recent`` None: no RECENT, as IMAP4rev2 has none).
        """
        out: list[bytes] = []
        self.modseq = max(self.modseq, changes.highestmodseq)
        top = self.uids[-1] if self.uids else 0
        new: list[MessageMeta] = []
        updated: list[int] = []
        touched: list[MessageMeta] = []
        for m in changes.changed:
            if m.uid > top:
                new.append(m)
                continue
            i = self.index_of(m.uid)
            if i is None or m.uid in self.ghosts:
                continue
            if m.modseq <= self.modseqs[i]:
                continue  # our own change, already announced
            same = m.flags == self.flags[i] and m.keywords == self.kws.get(m.uid, NO_KEYWORDS)
            self._set(i, m)
            if not same or condstore:
                updated.append(i)
                touched.append(m)
        if self.new_keywords(touched) | self.new_keywords(new):
            out.append(self.flags_response())
        for i in updated:
            out.append(self.unsolicited_fetch(i, condstore))
        vanished = [u for u in changes.vanished if u <= top and self.index_of(u) is not None]
        self.ghosts.update(vanished)
        if allow_expunge and self.ghosts:
            out += self.expunge(list(self.ghosts), vanished=qresync)
        if new:
            new.sort(key=lambda m: m.uid)
            self.uids += [m.uid for m in new]
            self.modseqs += [m.modseq for m in new]
            self.flags += bytes(m.flags & 0xFF for m in new)
            for m in new:
                if m.keywords:
                    self.kws[m.uid] = m.keywords
                self.facts[m.uid] = FixedFacts(m.internal_date, m.size, m.blob_id)
            self.uidnext = max(self.uidnext, self.uids[-1] + 1)
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if claim_recent is not None:  # None: IMAP4rev2, which has no RECENT response (RFC 9051 Appendix E)
                self.recent |= claim_recent([m.uid for m in new])
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        return out

    def unsolicited_fetch(self, i: int, condstore: bool) -> bytes:
        """``* n FETCH (UID u FLAGS (...) [MODSEQ (m)])`` for a flag change (UID always: RFC 7162 §3.2.4)."""
        mod = b" MODSEQ (%d)" % self.modseqs[i] if condstore else b""
        return b"* %d FETCH (UID %d FLAGS %s%s)\r\n" % (i + 1, self.uids[i], self.flags_of(i), mod)
