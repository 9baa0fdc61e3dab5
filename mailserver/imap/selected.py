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
- No I/O: this is plain data in, response bytes out.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from mailboxes.model import Changes, MessageMeta, flag_names

from .commands import SequenceSet
from .responses import flag_list

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

_flag_cache: dict[tuple[int, frozenset[str], bool], bytes] = {}
_FLAG_CACHE_MAX = 4096


def flags_bytes(meta: MessageMeta, recent: bool = False) -> bytes:
    """``(\\Seen $Label1)`` for a message, \\Recent added when it is recent for this session."""
    key = (meta.flags, meta.keywords, recent)
    out = _flag_cache.get(key)
    if out is None:
        names = flag_names(meta.flags, meta.keywords)
        if recent:
            names.append("\\Recent")
        out = flag_list(names)
        if len(_flag_cache) < _FLAG_CACHE_MAX:
            _flag_cache[key] = out
    return out


class BadSequence(ValueError):
    """A message sequence number beyond EXISTS (RFC 3501 §9 seq-number: BAD)."""


class SelectedMailbox:
    """One session's view of its selected folder (pymap's "selected mailbox" idea, our own code)."""

    def __init__(self, metas: list[MessageMeta], *, modseq: int, uidvalidity: int, uidnext: int,
                 read_only: bool, recent: set[int] | None = None, uids: list[int] | None = None,
                 keywords: Iterable[str] | None = None) -> None:
        """``uids`` and ``keywords``: the metas' UIDs and keywords when the caller has them already (copied)."""
        self.metas = list(metas)
        self.uids = list(uids) if uids is not None else [m.uid for m in self.metas]
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
            for m in self.metas:
                if m.keywords:
                    self.keywords.update(m.keywords)

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

    def flags_of(self, i: int) -> bytes:
        uid = self.uids[i]
        return flags_bytes(self.metas[i], uid in self.recent)

    def first_unseen(self) -> int | None:
        for i, m in enumerate(self.metas):
            if not m.flags & 1:  # Flag.SEEN
                return i + 1
        return None

    def flags_response(self) -> bytes:
        """``* FLAGS (...)``: the system flags and the keywords in use (RFC 3501 §7.2.6)."""
        return b"* FLAGS " + flag_list([*SYSTEM_FLAGS, *sorted(self.keywords)]) + b"\r\n"

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
                self.metas[i] = m
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
        self.metas = [self.metas[i] for i in keep]
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
        for m in changes.changed:
            if m.uid > top:
                new.append(m)
                continue
            i = self.index_of(m.uid)
            if i is None or m.uid in self.ghosts:
                continue
            old = self.metas[i]
            if m.modseq <= old.modseq:
                continue  # our own change, already announced
            self.metas[i] = m
            if (m.flags, m.keywords) != (old.flags, old.keywords) or condstore:
                updated.append(i)
        if self.new_keywords(self.metas[i] for i in updated) | self.new_keywords(new):
            out.append(self.flags_response())
        for i in updated:
            out.append(self.unsolicited_fetch(i, condstore))
        vanished = [u for u in changes.vanished if u <= top and self.index_of(u) is not None]
        self.ghosts.update(vanished)
        if allow_expunge and self.ghosts:
            out += self.expunge(list(self.ghosts), vanished=qresync)
        if new:
            new.sort(key=lambda m: m.uid)
            self.metas += new
            self.uids += [m.uid for m in new]
            self.uidnext = max(self.uidnext, self.uids[-1] + 1)
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if claim_recent is not None:  # None: IMAP4rev2, which has no RECENT response (RFC 9051 Appendix E)
                self.recent |= claim_recent([m.uid for m in new])
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        return out

    def unsolicited_fetch(self, i: int, condstore: bool) -> bytes:
        """``* n FETCH (UID u FLAGS (...) [MODSEQ (m)])`` for a flag change (UID always: RFC 7162 §3.2.4)."""
        m = self.metas[i]
        mod = b" MODSEQ (%d)" % m.modseq if condstore else b""
        return b"* %d FETCH (UID %d FLAGS %s%s)\r\n" % (i + 1, m.uid, self.flags_of(i), mod)
