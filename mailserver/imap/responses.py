"""IMAP4rev1 server responses as typed values whose ``bytes()`` is the exact wire form (RFC 3501 §7).

Strings are written the way RFC 3501 §4 allows and clients parse most reliably: an atom only
where the grammar says astring and the value is atom-safe (never ``NIL``), a quoted string
when the value is 7-bit (or UTF-8 once UTF8=ACCEPT is on), free of CR/LF/NUL and short, a
literal ``{n}\\r\\n...`` otherwise. Pre-rendered values (ENVELOPE, BODYSTRUCTURE, bodies) are
passed as ``Raw`` and joined, never re-scanned.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .commands import SequenceSet
from .mutf7 import encode_mutf7

MAX_QUOTED = 1024  # longer strings go out as literals
_ATOM_SAFE = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")
_ASTRING_SAFE = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\]+")
_QUOTABLE_7BIT = re.compile(rb"[^\x00\r\n\x80-\xff]*")
_QUOTABLE_8BIT = re.compile(rb"[^\x00\r\n]*")
_CRLF = re.compile(r"[\r\n]+")
MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


class Raw(bytes):
    """Bytes already in wire form: written as they are (flags, pre-rendered ENVELOPE, ...)."""


# ------------------------------------------------------------------ string encoders (RFC 3501 §4.3, §9)


def quoted(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def literal_parts(data: bytes) -> tuple[bytes, bytes]:
    """A literal as (header, data) so ``FetchData.chunks()`` can hand a large body on without copying it."""
    return b"{%d}\r\n" % len(data), data


def literal8(data: bytes) -> bytes:
    """RFC 3516 §4.2 literal8, for BINARY[...] values that contain NUL."""
    return b"~{%d}\r\n" % len(data) + data


def string(data: bytes | str, *, utf8: bool = False) -> bytes:
    """A quoted string when safe, else a literal (8-bit, CR/LF, NUL, or long)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    safe = _QUOTABLE_8BIT if utf8 else _QUOTABLE_7BIT
    if len(data) <= MAX_QUOTED and safe.fullmatch(data):
        return quoted(data)
    return literal(data)


def astring(data: bytes | str, *, utf8: bool = False) -> bytes:
    """An atom when atom-safe (``NIL`` is quoted so no parser mistakes it), else ``string()``."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if _ASTRING_SAFE.fullmatch(data) and data.upper() != b"NIL":
        return data
    return string(data, utf8=utf8)


def nstring(data: bytes | str | None, *, utf8: bool = False) -> bytes:
    return b"NIL" if data is None else string(data, utf8=utf8)


def mailbox_name(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name: modified UTF-7 (RFC 3501 §5.1.3) or UTF-8 after ENABLE UTF8=ACCEPT (RFC 6855 §3)."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(name.encode("utf-8") if utf8 else encode_mutf7(name), utf8=utf8)


def date_time(dt: datetime) -> bytes:
    """RFC 3501 §9 date-time, e.g. ``"17-Jul-1996 02:44:25 -0700"`` (day padded with a space)."""
    offset = dt.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    sign = b"-" if minutes < 0 else b"+"
    hh, mm = divmod(abs(minutes), 60)
    return b'"%2d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        dt.day, MONTHS[dt.month - 1], dt.year, dt.hour, dt.minute, dt.second, sign, hh, mm,
    )  # fmt: skip


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Junk)``: flags are atoms (system flags with their backslash)."""
    return b"(" + " ".join(flags).encode("ascii") + b")"


def render(value: object, *, utf8: bool = False) -> bytes:
    """Nested values: None → NIL, int → number, bytes/str → string, Raw → as is, list/tuple → parenthesised."""
    if isinstance(value, Raw):
        return value
    if value is None:
        return b"NIL"
    if isinstance(value, (bytes, str)):
        return string(value, utf8=utf8)
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, (list, tuple)):
        return b"(" + b" ".join(render(v, utf8=utf8) for v in value) + b")"
    if isinstance(value, SequenceSet):
        return bytes(value)
    if isinstance(value, datetime):
        return date_time(value)
    raise TypeError(f"cannot render {type(value).__name__} as an IMAP value")


def _text(text: str) -> bytes:
    # RFC 3501 §9 text = 1*TEXT-CHAR: never empty, never CR/LF (no response injection)
    return _CRLF.sub(" ", text).encode("utf-8") or b"done"


# ------------------------------------------------------------------ response codes (RFC 3501 §7.1, RFC 5530)


@dataclass(frozen=True, slots=True)
class Code:
    """A response code: ``[NAME]`` or ``[NAME data]``; build the common ones with the helpers below."""

    name: str
    data: bytes = b""

    def __bytes__(self) -> bytes:
        return b"[" + self.name.encode("ascii") + (b" " + self.data if self.data else b"") + b"]"

    @classmethod
    def uidvalidity(cls, n: int) -> Code:
        return cls("UIDVALIDITY", b"%d" % n)

    @classmethod
    def uidnext(cls, n: int) -> Code:
        return cls("UIDNEXT", b"%d" % n)

    @classmethod
    def unseen(cls, n: int) -> Code:
        return cls("UNSEEN", b"%d" % n)

    @classmethod
    def highestmodseq(cls, n: int) -> Code:  # RFC 7162 §3.1.2.1
        return cls("HIGHESTMODSEQ", b"%d" % n)

    @classmethod
    def permanentflags(cls, flags: Iterable[str]) -> Code:
        return cls("PERMANENTFLAGS", flag_list(flags))

    @classmethod
    def capability(cls, caps: Iterable[str]) -> Code:
        return cls("CAPABILITY", " ".join(caps).encode("ascii"))

    @classmethod
    def appenduid(cls, uidvalidity: int, uids: int | SequenceSet) -> Code:  # RFC 4315 §3
        return cls("APPENDUID", b"%d %s" % (uidvalidity, b"%d" % uids if isinstance(uids, int) else bytes(uids)))

    @classmethod
    def copyuid(cls, uidvalidity: int, source: SequenceSet, dest: SequenceSet) -> Code:  # RFC 4315 §3
        return cls("COPYUID", b"%d %s %s" % (uidvalidity, bytes(source), bytes(dest)))

    @classmethod
    def modified(cls, numbers: SequenceSet) -> Code:  # RFC 7162 §3.1.3
        return cls("MODIFIED", bytes(numbers))

    @classmethod
    def badcharset(cls, charsets: Iterable[str]) -> Code:  # RFC 3501 §7.1
        return cls("BADCHARSET", render([Raw(astring(c)) for c in charsets]))


# Argument-less codes: RFC 3501 §7.1, RFC 5530 §3, RFC 4315 §3, RFC 7162 §3.1.2.2 / §3.2.11, RFC 4469 / RFC 7889.
ALERT, PARSE, READ_ONLY, READ_WRITE, TRYCREATE = map(Code, ("ALERT", "PARSE", "READ-ONLY", "READ-WRITE", "TRYCREATE"))
UNAVAILABLE, AUTHENTICATIONFAILED, AUTHORIZATIONFAILED = map(
    Code, ("UNAVAILABLE", "AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED")
)
EXPIRED, PRIVACYREQUIRED, CONTACTADMIN, NOPERM, INUSE = map(
    Code, ("EXPIRED", "PRIVACYREQUIRED", "CONTACTADMIN", "NOPERM", "INUSE")
)
EXPUNGEISSUED, CORRUPTION, SERVERBUG, CLIENTBUG, CANNOT = map(
    Code, ("EXPUNGEISSUED", "CORRUPTION", "SERVERBUG", "CLIENTBUG", "CANNOT")
)
LIMIT, OVERQUOTA, ALREADYEXISTS, NONEXISTENT, CLOSED = map(
    Code, ("LIMIT", "OVERQUOTA", "ALREADYEXISTS", "NONEXISTENT", "CLOSED")
)
NOMODSEQ, TOOBIG, UIDNOTSTICKY, HASCHILDREN, NOTSAVED = map(
    Code, ("NOMODSEQ", "TOOBIG", "UIDNOTSTICKY", "HASCHILDREN", "NOTSAVED")
)


# ------------------------------------------------------------------ status and continuation responses


@dataclass(frozen=True, slots=True)
class Tagged:
    """``tag OK|NO|BAD [code] text`` (RFC 3501 §7.1)."""

    tag: str
    status: Literal["OK", "NO", "BAD"]
    text: str = ""
    code: Code | None = None

    def __bytes__(self) -> bytes:
        code = bytes(self.code) + b" " if self.code else b""
        return b"%s %s %s%s\r\n" % (self.tag.encode("ascii"), self.status.encode("ascii"), code, _text(self.text))


@dataclass(frozen=True, slots=True)
class Untagged:
    """``* OK|NO|BAD|PREAUTH|BYE [code] text`` (RFC 3501 §7.1)."""

    status: Literal["OK", "NO", "BAD", "PREAUTH", "BYE"]
    text: str = ""
    code: Code | None = None

    def __bytes__(self) -> bytes:
        return bytes(Tagged("*", self.status, self.text, self.code))  # type: ignore[arg-type]


def bye(text: str = "Logging out", code: Code | None = None) -> Untagged:
    return Untagged("BYE", text, code)


@dataclass(frozen=True, slots=True)
class Continuation:
    """``+ text`` (RFC 3501 §7.5): ``+ Ready`` for a literal, ``+ idling`` for IDLE."""

    text: str = "Ready"

    def __bytes__(self) -> bytes:
        return b"+ " + _text(self.text) + b"\r\n"


@dataclass(frozen=True, slots=True)
class SaslChallenge:
    """``+ base64`` (RFC 3501 §6.2.2); an empty challenge is ``+ `` then CRLF."""

    data: bytes = b""

    def __bytes__(self) -> bytes:
        return b"+ " + base64.b64encode(self.data) + b"\r\n"


# ------------------------------------------------------------------ untagged data (RFC 3501 §7.2-§7.4)


def _numbers(values: Iterable[int]) -> bytes:
    return b" ".join(b"%d" % v for v in values)


@dataclass(frozen=True, slots=True)
class Capabilities:
    caps: tuple[str, ...]

    def __bytes__(self) -> bytes:
        return b"* CAPABILITY " + " ".join(self.caps).encode("ascii") + b"\r\n"


@dataclass(frozen=True, slots=True)
class Exists:
    count: int

    def __bytes__(self) -> bytes:
        return b"* %d EXISTS\r\n" % self.count


@dataclass(frozen=True, slots=True)
class Recent:
    count: int

    def __bytes__(self) -> bytes:
        return b"* %d RECENT\r\n" % self.count


@dataclass(frozen=True, slots=True)
class Expunged:
    seq: int

    def __bytes__(self) -> bytes:
        return b"* %d EXPUNGE\r\n" % self.seq


@dataclass(frozen=True, slots=True)
class Vanished:
    """RFC 7162 §3.2.10: ``* VANISHED [(EARLIER)] uid-set``."""

    uids: SequenceSet
    earlier: bool = False

    def __bytes__(self) -> bytes:
        return b"* VANISHED " + (b"(EARLIER) " if self.earlier else b"") + bytes(self.uids) + b"\r\n"


@dataclass(frozen=True, slots=True)
class Flags:
    flags: tuple[str, ...]

    def __bytes__(self) -> bytes:
        return b"* FLAGS " + flag_list(self.flags) + b"\r\n"


@dataclass(frozen=True, slots=True)
class ListItem:
    """``* LIST (attrs) "/" name [extended items]`` (RFC 3501 §7.2.2, RFC 5258 §3.4); ``kind="LSUB"`` for LSUB."""

    attributes: tuple[str, ...]
    delimiter: str | None
    name: str
    extended: tuple[tuple[str, object], ...] = ()  # e.g. (("CHILDINFO", ("SUBSCRIBED",)),) or (("OLDNAME", (...)),)
    utf8: bool = False
    kind: Literal["LIST", "LSUB"] = "LIST"

    def __bytes__(self) -> bytes:
        delim = b"NIL" if self.delimiter is None else quoted(self.delimiter.encode("utf-8"))
        name = mailbox_name(self.name, utf8=self.utf8)
        out = b"* %s %s %s %s" % (self.kind.encode(), flag_list(self.attributes), delim, name)
        if self.extended:
            out += b" (" + b" ".join(quoted(k.encode("ascii")) + b" " + render(v) for k, v in self.extended) + b")"
        return out + b"\r\n"


@dataclass(frozen=True, slots=True)
class StatusData:
    """``* STATUS name (MESSAGES 3 UIDNEXT 4)`` (RFC 3501 §7.2.4)."""

    mailbox: str
    items: tuple[tuple[str, int], ...]
    utf8: bool = False

    def __bytes__(self) -> bytes:
        body = b" ".join(b"%s %d" % (k.encode("ascii"), v) for k, v in self.items)
        return b"* STATUS " + mailbox_name(self.mailbox, utf8=self.utf8) + b" (" + body + b")\r\n"


@dataclass(frozen=True, slots=True)
class SearchData:
    """``* SEARCH 2 3 6 [(MODSEQ n)]`` (RFC 3501 §7.2.5, RFC 7162 §3.1.5)."""

    numbers: Sequence[int]
    modseq: int | None = None
    keyword: bytes = b"SEARCH"  # b"SORT": the same form in sort order (RFC 5256 §4)

    def __bytes__(self) -> bytes:
        out = b"* " + self.keyword
        if self.numbers:
            out += b" " + _numbers(self.numbers)
        if self.modseq is not None:
            out += b" (MODSEQ %d)" % self.modseq
        return out + b"\r\n"


@dataclass(frozen=True, slots=True)
class ESearchData:
    """``* ESEARCH (TAG "t") UID MIN 1 MAX 9 COUNT 4 ALL 1:3,9 MODSEQ n`` (RFC 4731 §3.1, RFC 7162 §3.1.5)."""

    tag: str | None = None
    uid: bool = False
    min: int | None = None
    max: int | None = None
    count: int | None = None
    all: SequenceSet | None = None
    modseq: int | None = None

    def __bytes__(self) -> bytes:
        out = [b"* ESEARCH"]
        if self.tag is not None:
            out.append(b"(TAG " + quoted(self.tag.encode("ascii")) + b")")
        if self.uid:
            out.append(b"UID")
        for name, value in ((b"MIN", self.min), (b"MAX", self.max), (b"COUNT", self.count)):
            if value is not None:
                out.append(b"%s %d" % (name, value))
        if self.all is not None and self.all.ranges:
            out.append(b"ALL " + bytes(self.all))
        if self.modseq is not None:
            out.append(b"MODSEQ %d" % self.modseq)
        return b" ".join(out) + b"\r\n"


@dataclass(frozen=True, slots=True)
class FetchData:
    """``* n FETCH (name value ...)`` (RFC 3501 §7.4.2); values are already wire bytes.

    Build values with ``flag_list``, ``date_time``, ``nstring``/``literal`` (bodies), the
    stored ENVELOPE/BODYSTRUCTURE bytes, and names with ``FetchBody.response_name()``. A
    value given as a tuple of pieces (``literal_parts(body)``) goes out piece by piece:
    ``chunks()`` lets a transport ``writelines()`` large bodies without copying them.
    """

    seq: int
    items: Sequence[tuple[bytes, bytes | tuple[bytes, ...]]]  # a tuple value is written piece by piece

    def chunks(self) -> list[bytes]:
        out = [b"* %d FETCH (" % self.seq]
        for name, value in self.items:
            out += (name, b" ")
            if isinstance(value, tuple):
                out += value
            else:
                out.append(value)
            out.append(b" ")
        if len(out) > 1:
            out.pop()
        out.append(b")\r\n")
        return out

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())


def fetch_lines(rows: Iterable[tuple[int, Sequence[tuple[bytes, bytes]]]]) -> bytes:
    """Many FETCH responses at once, for the common bulk case (flags/UID/size listings)."""
    return b"".join(
        b"* %d FETCH (%s)\r\n" % (seq, b" ".join(name + b" " + value for name, value in items)) for seq, items in rows
    )


@dataclass(frozen=True, slots=True)
class Enabled:
    """``* ENABLED caps`` (RFC 5161 §3.2)."""

    caps: tuple[str, ...] = ()

    def __bytes__(self) -> bytes:
        return b"* ENABLED" + b"".join(b" " + c.encode("ascii") for c in self.caps) + b"\r\n"


@dataclass(frozen=True, slots=True)
class IdData:
    """``* ID ("name" "Postroom" ...)`` or ``* ID NIL`` (RFC 2971 §3.2)."""

    params: tuple[tuple[str, str | None], ...] | None = None

    def __bytes__(self) -> bytes:
        if self.params is None:
            return b"* ID NIL\r\n"
        return b"* ID " + render([x for kv in self.params for x in kv]) + b"\r\n"


@dataclass(frozen=True, slots=True)
class NamespaceData:
    """``* NAMESPACE (("" "/")) NIL NIL`` (RFC 2342 §5); each class a list of (prefix, delimiter) or None."""

    personal: tuple[tuple[str, str | None], ...] | None = (("", "/"),)
    other: tuple[tuple[str, str | None], ...] | None = None
    shared: tuple[tuple[str, str | None], ...] | None = None
    utf8: bool = False

    def _one(self, entries: tuple[tuple[str, str | None], ...] | None) -> bytes:
        if entries is None:
            return b"NIL"
        items = []
        for prefix, delim in entries:
            name = prefix.encode("utf-8") if self.utf8 else encode_mutf7(prefix)
            items.append(b"(" + string(name, utf8=self.utf8) + b" " + nstring(delim) + b")")
        return b"(" + b"".join(items) + b")"

    def __bytes__(self) -> bytes:
        return b"* NAMESPACE %s %s %s\r\n" % (self._one(self.personal), self._one(self.other), self._one(self.shared))


@dataclass(frozen=True, slots=True)
class QuotaData:
    """``* QUOTA root (STORAGE 10 512)`` (RFC 9208 §5.1): (resource, usage, limit) triples."""

    root: str
    resources: tuple[tuple[str, int, int], ...]

    def __bytes__(self) -> bytes:
        body = b" ".join(b"%s %d %d" % (n.encode("ascii"), u, lim) for n, u, lim in self.resources)
        return b"* QUOTA " + astring(self.root) + b" (" + body + b")\r\n"


@dataclass(frozen=True, slots=True)
class QuotaRootData:
    """``* QUOTAROOT INBOX ""`` (RFC 9208 §5.2)."""

    mailbox: str
    roots: tuple[str, ...]
    utf8: bool = False

    def __bytes__(self) -> bytes:
        roots = b"".join(b" " + astring(r) for r in self.roots)
        return b"* QUOTAROOT " + mailbox_name(self.mailbox, utf8=self.utf8) + roots + b"\r\n"


@dataclass(frozen=True, slots=True)
class AclData:
    """``* ACL mailbox id rights ...`` (RFC 4314 §3.6)."""

    mailbox: str
    entries: tuple[tuple[str, str], ...]
    utf8: bool = False

    def __bytes__(self) -> bytes:
        body = b"".join(b" " + astring(i) + b" " + astring(r) for i, r in self.entries)
        return b"* ACL " + mailbox_name(self.mailbox, utf8=self.utf8) + body + b"\r\n"


@dataclass(frozen=True, slots=True)
class ListRightsData:
    """``* LISTRIGHTS mailbox id required optional...`` (RFC 4314 §3.7)."""

    mailbox: str
    identifier: str
    required: str
    optional: tuple[str, ...] = ()
    utf8: bool = False

    def __bytes__(self) -> bytes:
        head = b"* LISTRIGHTS " + mailbox_name(self.mailbox, utf8=self.utf8) + b" " + astring(self.identifier)
        return head + b"".join(b" " + astring(r) for r in (self.required, *self.optional)) + b"\r\n"


@dataclass(frozen=True, slots=True)
class MyRightsData:
    """``* MYRIGHTS mailbox rights`` (RFC 4314 §3.8)."""

    mailbox: str
    rights: str
    utf8: bool = False

    def __bytes__(self) -> bytes:
        return b"* MYRIGHTS " + mailbox_name(self.mailbox, utf8=self.utf8) + b" " + astring(self.rights) + b"\r\n"


Response = (
    Tagged | Untagged | Continuation | SaslChallenge | Capabilities | Exists | Recent | Expunged | Vanished
    | Flags | ListItem | StatusData | SearchData | ESearchData | FetchData | Enabled | IdData | NamespaceData
    | QuotaData | QuotaRootData | AclData | ListRightsData | MyRightsData
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ThreadData:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` (RFC 5256 §4); ``lists`` is the thread-lists as written."""

    lists: bytes

    def __bytes__(self) -> bytes:
        return b"* THREAD" + (b" " + self.lists if self.lists else b"") + b"\r\n"
