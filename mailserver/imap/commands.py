"""Typed IMAP4rev1 commands and their values (sequence sets, search keys, fetch items), as the grammar yields them."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import ClassVar, Literal

MAX_NUMBER = 2**32 - 1  # RFC 3501 §9: number / nz-number are 32-bit unsigned
MAX_NUMBER64 = 2**63 - 1  # RFC 7162 §7 / RFC 9208 §4: mod-sequence-value, number64

# --------------------------------------------------------------------- sequence sets

# RFC 3501 §9 sequence-set, RFC 5182 §2.1 "$" (SEARCHRES) as the whole set.
_SEQ_RE = re.compile(rb"\$|(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*")


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A sequence set as written: ranges in the client's order, ``None`` for ``*``; ``saved`` for ``$``.

    A single number ``n`` is the range ``(n, n)``. Ranges may be written high-to-low
    (``5:2``); every method normalises. Nothing ever materialises a range.
    """

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    @classmethod
    def parse(cls, data: bytes | str) -> SequenceSet:
        raw = data.encode("ascii") if isinstance(data, str) else data
        parsed = parse_sequence_set(raw, 0)
        if parsed is None or parsed[1] != len(raw):
            raise ValueError(f"not a sequence set: {data!r}")
        return parsed[0]

    @classmethod
    def from_ints(cls, numbers: Iterable[int]) -> SequenceSet:
        """The shortest set of ascending ranges covering ``numbers`` (used for COPYUID, VANISHED, ESEARCH ALL)."""
        ranges: list[tuple[int, int]] = []
        for n in sorted(set(numbers)):
            if ranges and ranges[-1][1] == n - 1:
                ranges[-1] = (ranges[-1][0], n)
            else:
                ranges.append((n, n))
        return cls(tuple(ranges))

    def resolve(self, saved: SequenceSet) -> SequenceSet:
        """Replace ``$`` by the set saved with SEARCH RETURN (SAVE) (RFC 5182 §2.1)."""
        return saved if self.saved else self

    def normalised(self, max_value: int) -> tuple[tuple[int, int], ...]:
        """Ascending, merged, non-overlapping ``(lo, hi)`` ranges within ``1..max_value`` (``*`` = ``max_value``)."""
        if self.saved:
            raise ValueError("resolve '$' before expanding a sequence set")
        spans = []
        for a, b in self.ranges:
            lo, hi = max_value if a is None else a, max_value if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            lo, hi = max(lo, 1), min(hi, max_value)
            if lo <= hi:
                spans.append((lo, hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return tuple(merged)

    def iter(self, max_value: int) -> Iterator[int]:
        """The members within ``1..max_value`` in ascending order, lazily."""
        for lo, hi in self.normalised(max_value):
            yield from range(lo, hi + 1)

    def count(self, max_value: int) -> int:
        return sum(hi - lo + 1 for lo, hi in self.normalised(max_value))

    def contains(self, n: int, max_value: int) -> bool:
        """Membership of ``n`` with ``*`` read as ``max_value`` (RFC 3501 §6.4.8: ``559:*`` includes the last UID)."""
        return self.matcher(max_value)(n)

    def matcher(self, max_value: int):
        """A fast ``n -> bool`` membership test for scanning many messages (bisect over merged ranges)."""
        spans = self.normalised(max_value)
        los = [lo for lo, _ in spans]

        def member(n: int) -> bool:
            i = bisect.bisect_right(los, n) - 1
            return i >= 0 and n <= spans[i][1]

        return member

    def max_explicit(self) -> int:
        """The largest number written (not ``*``), so a server can reject out-of-range sequence numbers."""
        return max((x for r in self.ranges for x in r if x is not None), default=0)

    def __bytes__(self) -> bytes:
        if self.saved:
            return b"$"
        parts = []
        for a, b in self.ranges:
            sa = b"*" if a is None else b"%d" % a
            parts.append(sa if a == b else sa + b":" + (b"*" if b is None else b"%d" % b))
        return b",".join(parts)

    def __str__(self) -> str:
        return bytes(self).decode("ascii")


def parse_sequence_set(buf: bytes, pos: int) -> tuple[SequenceSet, int] | None:
    """Parse a sequence set at ``pos``; ``None`` if none is there or a number is 0 or over 2**32-1."""
    m = _SEQ_RE.match(buf, pos)
    if m is None:
        return None
    text = m.group()
    if text == b"$":
        return SequenceSet(saved=True), m.end()
    ranges = []
    for item in text.split(b","):
        ends = []
        for x in item.split(b":"):
            if x == b"*":
                ends.append(None)
            elif len(x) > 10 or not 0 < int(x) <= MAX_NUMBER:  # RFC 3501 §9: nz-number
                return None
            else:
                ends.append(int(x))
        ranges.append((ends[0], ends[-1]))
    return SequenceSet(tuple(ranges)), m.end()


# --------------------------------------------------------------------- search keys (RFC 3501 §6.4.4)


@dataclass(frozen=True, slots=True)
class SearchAll:
    pass


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """ANSWERED/DELETED/DRAFT/FLAGGED/SEEN/RECENT, KEYWORD and their UN-/OLD negations."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE (internal date) and SENTBEFORE/SENTON/SENTSINCE (Date: header)."""

    field: Literal["internal", "sent"]
    op: Literal["before", "on", "since"]
    date: date


@dataclass(frozen=True, slots=True)
class SearchSize:
    op: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """HEADER field value, and the BCC/CC/FROM/SUBJECT/TO shortcuts; ``field`` is lower-case.

    ``by_name``: given as HEADER field-name (header text), not as the FROM/TO/CC/BCC key
    (the envelope's addresses, RFC 3501 §6.4.4).
    """

    field: str
    value: str
    by_name: bool = False


@dataclass(frozen=True, slots=True)
class SearchText:
    where: Literal["body", "text"]
    value: str


@dataclass(frozen=True, slots=True)
class SearchSeq:
    """A bare sequence set, or UID set when ``uid``."""

    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """RFC 7162 §3.1.5 MODSEQ ["/flags/\\Seen" priv|shared|all] n."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """A parenthesised list, or the implicit AND of the top-level keys (always two or more)."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll | SearchFlag | SearchDate | SearchSize | SearchHeader | SearchText
    | SearchSeq | SearchModSeq | SearchNot | SearchOr | SearchAnd
)  # fmt: skip

# --------------------------------------------------------------------- fetch items (RFC 3501 §6.4.5)

FETCH_ATTS = frozenset({
    "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE", "RFC822.TEXT",
    "BODY", "BODYSTRUCTURE", "UID",
    "MODSEQ",  # RFC 7162 §3.1.4
    "EMAILID", "THREADID",  # RFC 8474 §5
    "SAVEDATE",  # RFC 8514 §4
})  # fmt: skip
FETCH_MACROS = {  # RFC 3501 §6.4.5
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """A plain fetch attribute by its upper-case name (one of FETCH_ATTS)."""

    name: str


@dataclass(frozen=True, slots=True)
class Section:
    """RFC 3501 §6.4.5 section-spec: ``part`` numbers, then HEADER / HEADER.FIELDS[.NOT] / TEXT / MIME."""

    part: tuple[int, ...] = ()
    text: Literal["HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"] | None = None
    fields: tuple[str, ...] = ()

    def __bytes__(self) -> bytes:
        out = b".".join(b"%d" % p for p in self.part)
        if self.text:
            out += (b"." if out else b"") + self.text.encode("ascii")
        if self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            from .responses import astring  # header-fld-name = astring; imported late: responses imports us

            # a field name the client sent with 8-bit bytes comes back byte for byte (surrogateescape)
            out += b" (" + b" ".join(astring(f) for f in self.fields) + b")"
        return out


@dataclass(frozen=True, slots=True)
class FetchBody:
    """BODY[section]<partial>, BODY.PEEK[...], BINARY[...] and BINARY.PEEK[...] (RFC 3516 §4.2)."""

    section: Section = Section()
    partial: tuple[int, int] | None = None  # (offset, length)
    peek: bool = False
    binary: bool = False

    def response_name(self) -> bytes:
        """The item name in the FETCH response: never .PEEK, ``<origin>`` only (RFC 3501 §7.4.2)."""
        name = (b"BINARY[" if self.binary else b"BODY[") + bytes(self.section) + b"]"
        return name + b"<%d>" % self.partial[0] if self.partial else name


@dataclass(frozen=True, slots=True)
class FetchBinarySize:
    """BINARY.SIZE[part] (RFC 3516 §4.2)."""

    part: tuple[int, ...] = ()

    def response_name(self) -> bytes:
        return b"BINARY.SIZE[" + b".".join(b"%d" % p for p in self.part) + b"]"


FetchItem = FetchAtt | FetchBody | FetchBinarySize

# --------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class CommandBody:
    """Base of the typed commands; ``NAME`` is the command keyword, ``name`` adds the UID prefix."""

    NAME: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return ("UID " if getattr(self, "uid", False) else "") + self.NAME


@dataclass(frozen=True, slots=True)
class Command:
    """A complete, well-formed command: the parser's main event, and what command_to_bytes writes."""

    tag: str
    command: CommandBody


# RFC 3501 §6.1.1-§6.1.3, §6.2.1, §6.4.1-§6.4.3; RFC 3691 UNSELECT; RFC 2177 IDLE; RFC 2342 NAMESPACE.
@dataclass(frozen=True, slots=True)
class Capability(CommandBody):
    NAME: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(CommandBody):
    NAME: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(CommandBody):
    NAME: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTLS(CommandBody):
    NAME: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Compress(CommandBody):
    """RFC 4978 §3; the mechanism upper-cased (DEFLATE is the only one defined)."""

    NAME: ClassVar[str] = "COMPRESS"
    mechanism: str


@dataclass(frozen=True, slots=True)
class Check(CommandBody):
    NAME: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(CommandBody):
    NAME: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(CommandBody):
    NAME: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(CommandBody):
    NAME: ClassVar[str] = "EXPUNGE"


@dataclass(frozen=True, slots=True)
class Idle(CommandBody):
    NAME: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class Namespace(CommandBody):
    NAME: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Authenticate(CommandBody):
    """RFC 3501 §6.2.2; ``initial_response`` is the decoded SASL-IR (RFC 4959), ``b""`` for ``=``."""

    NAME: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Login(CommandBody):
    NAME: ClassVar[str] = "LOGIN"
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class QResync:
    """RFC 7162 §3.2.5 QRESYNC select parameter."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None  # (known sequence set, known uid set)


@dataclass(frozen=True, slots=True)
class Select(CommandBody):
    NAME: ClassVar[str] = "SELECT"
    mailbox: str
    condstore: bool = False  # RFC 7162 §3.1.8
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Examine(CommandBody):
    NAME: ClassVar[str] = "EXAMINE"
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Create(CommandBody):
    NAME: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 §3 (USE (\Sent))


@dataclass(frozen=True, slots=True)
class Delete(CommandBody):
    NAME: ClassVar[str] = "DELETE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(CommandBody):
    NAME: ClassVar[str] = "RENAME"
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe(CommandBody):
    NAME: ClassVar[str] = "SUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(CommandBody):
    NAME: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class List(CommandBody):
    """LIST, basic (RFC 3501 §6.3.8) or extended (RFC 5258 §3) when ``extended``.

    ``return_options`` holds SUBSCRIBED / CHILDREN / SPECIAL-USE; RETURN (STATUS (...))
    (RFC 5819) is ``status_items``. Patterns keep their ``%``/``*`` wildcards.
    """

    NAME: ClassVar[str] = "LIST"
    reference: str
    patterns: tuple[str, ...]
    selection_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        ext = self.extended or bool(self.selection_options or self.return_options) or len(self.patterns) != 1
        object.__setattr__(self, "extended", ext or self.status_items is not None)


@dataclass(frozen=True, slots=True)
class Lsub(CommandBody):
    NAME: ClassVar[str] = "LSUB"
    reference: str
    pattern: str


STATUS_ITEMS = frozenset({
    "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN",  # RFC 3501 §6.3.10
    "HIGHESTMODSEQ",  # RFC 7162 §3.1.9
    "SIZE",  # RFC 8438
    "DELETED",  # RFC 9051 §6.3.11
    "APPENDLIMIT",  # RFC 7889
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Status(CommandBody):
    NAME: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append(CommandBody):
    """RFC 3501 §6.3.11; ``literal8`` for ``~{n}`` (RFC 3516), ``utf8`` for ``UTF8 (~{n})`` (RFC 6855 §4)."""

    NAME: ClassVar[str] = "APPEND"
    mailbox: str
    message: bytes = field(repr=False)
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    literal8: bool = False
    utf8: bool = False


@dataclass(frozen=True, slots=True)
class UidExpunge(CommandBody):
    """UID EXPUNGE (RFC 4315 §2.1)."""

    NAME: ClassVar[str] = "UID EXPUNGE"
    uids: SequenceSet


@dataclass(frozen=True, slots=True)
class Search(CommandBody):
    """SEARCH / UID SEARCH; ``return_options`` is None for plain SEARCH, else the ESEARCH RETURN list (RFC 4731 §3)."""

    NAME: ClassVar[str] = "SEARCH"
    criteria: SearchKey
    charset: str | None = None
    uid: bool = False
    return_options: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Fetch(CommandBody):
    """FETCH / UID FETCH; macros are expanded; (CHANGEDSINCE n VANISHED) per RFC 7162 §3.1.4, §3.2.6.

    UID FETCH answers with UID even when not asked (RFC 3501 §6.4.8): the session adds it, not the parser.
    """

    NAME: ClassVar[str] = "FETCH"
    sequence_set: SequenceSet
    items: tuple[FetchItem, ...]
    uid: bool = False
    changed_since: int | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class Store(CommandBody):
    """STORE / UID STORE: ``mode`` FLAGS (replace), +FLAGS (add), -FLAGS (remove); UNCHANGEDSINCE: RFC 7162 §3.1.3."""

    NAME: ClassVar[str] = "STORE"
    sequence_set: SequenceSet
    mode: Literal["replace", "add", "remove"]
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class Copy(CommandBody):
    NAME: ClassVar[str] = "COPY"
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move(CommandBody):
    """RFC 6851 §3.1."""

    NAME: ClassVar[str] = "MOVE"
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Id(CommandBody):
    """RFC 2971 §3.1: ``params`` is None for ``ID NIL``."""

    NAME: ClassVar[str] = "ID"
    params: tuple[tuple[str, str | None], ...] | None = None


@dataclass(frozen=True, slots=True)
class Enable(CommandBody):
    """RFC 5161 §3.1; capability names upper-cased."""

    NAME: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GetQuota(CommandBody):
    NAME: ClassVar[str] = "GETQUOTA"  # RFC 9208 §4.2
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(CommandBody):
    NAME: ClassVar[str] = "GETQUOTAROOT"  # RFC 9208 §4.3
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota(CommandBody):
    NAME: ClassVar[str] = "SETQUOTA"  # RFC 9208 §4.4
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SetAcl(CommandBody):
    """RFC 4314 §3.1: ``rights`` without the sign; ``mode`` from a leading "+" / "-"."""

    NAME: ClassVar[str] = "SETACL"
    mailbox: str
    identifier: str
    rights: str
    mode: Literal["replace", "add", "remove"] = "replace"


@dataclass(frozen=True, slots=True)
class DeleteAcl(CommandBody):
    NAME: ClassVar[str] = "DELETEACL"  # RFC 4314 §3.2
    mailbox: str
    identifier: str


@dataclass(frozen=True, slots=True)
class GetAcl(CommandBody):
    NAME: ClassVar[str] = "GETACL"  # RFC 4314 §3.3
    mailbox: str


@dataclass(frozen=True, slots=True)
class ListRights(CommandBody):
    NAME: ClassVar[str] = "LISTRIGHTS"  # RFC 4314 §3.4
    mailbox: str
    identifier: str


@dataclass(frozen=True, slots=True)
class MyRights(CommandBody):
    NAME: ClassVar[str] = "MYRIGHTS"  # RFC 4314 §3.5
    mailbox: str


# RFC 5256 SORT / THREAD, RFC 5267 §3 ESORT, RFC 3502 MULTIAPPEND


@dataclass(frozen=True, slots=True)
class Sort(CommandBody):
    """SORT / UID SORT; ``keys`` are (key, reverse) pairs; ``return_options`` is the ESORT RETURN list or None."""

    NAME: ClassVar[str] = "SORT"
    keys: tuple[tuple[str, bool], ...]
    criteria: SearchKey
    charset: str
    uid: bool = False
    return_options: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Thread(CommandBody):
    """THREAD / UID THREAD with an algorithm name (REFERENCES, ORDEREDSUBJECT)."""

    NAME: ClassVar[str] = "THREAD"
    algorithm: str
    criteria: SearchKey
    charset: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class MultiAppend(CommandBody):
    """APPEND with two or more messages (RFC 3502 §3): all appended in one transaction, or none."""

    NAME: ClassVar[str] = "APPEND"
    mailbox: str
    messages: tuple[Append, ...]
