"""Token and value grammar of IMAP4rev1 commands (RFC 3501 §9): strings, literals, dates, search keys, fetch items."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

from . import commands as c
from .commands import MAX_NUMBER, MAX_NUMBER64, SequenceSet, parse_sequence_set
from .mutf7 import decode_mutf7

MAX_NESTING = 32  # search-key / parenthesis depth; keeps recursion bounded for any input
MAX_SEARCH_KEYS = 500  # search keys in one SEARCH: each text key may scan the whole mailbox

# RFC 3501 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")
_ASTRING_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\]+")  # ASTRING-CHAR adds "]"
_LIST_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){\"\\]+")  # list-char adds "%" "*" "]"
# quoted: RFC 3501 §9, with 8-bit allowed as RFC 6855 §3 does for UTF8=ACCEPT
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}")
_NUMBER = re.compile(rb"[0-9]+")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_PART = re.compile(rb"[0-9]+(?:\.[0-9]+)*")
_SECTION_TEXT = re.compile(rb"HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME", re.I)
_PARTIAL = re.compile(rb"<([0-9]{1,10})\.([0-9]{1,10})>")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
# RFC 3501 §9 date-time; a one-digit day without its padding space is tolerated
_DATE_TIME = re.compile(
    rb'" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")}
SPECIAL_USE = {f.lower(): f for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")}
# Charsets SEARCH accepts (RFC 3501 §6.4.4); anything else is BadCharset. Python codec names.
SEARCH_CHARSETS = {
    "US-ASCII": "ascii", "UTF-8": "utf-8", "ISO-8859-1": "latin-1", "ISO-8859-15": "iso8859-15",
    "WINDOWS-1252": "cp1252", "GB2312": "gb18030", "GBK": "gb18030", "GB18030": "gb18030",
    "BIG5": "big5", "ISO-2022-JP": "iso2022_jp", "SHIFT_JIS": "shift_jis", "EUC-KR": "euc_kr",
}  # fmt: skip


class UnusableName(str):
    """A mailbox name whose octets are not canonical modified UTF-7 (a raw "&" is common).

    It is well-formed syntax, so it is no reason for BAD (RFC 3501 §7.1.3: BAD is for
    syntax, and some clients drop the connection on one). Its text starts with NUL, which
    no stored folder name contains: SELECT answers NO [NONEXISTENT], a LIST pattern
    matches nothing, and CREATE/RENAME refuse it with a clear NO.
    """

    raw: bytes

    def __new__(cls, raw: bytes) -> UnusableName:
        self = super().__new__(cls, "\0" + raw.decode("latin-1"))
        self.raw = raw
        return self


class SyntaxErr(ValueError):
    def __init__(self, message: str, tag: str | None = None):
        super().__init__(message)
        self.tag = tag


class BadCharsetError(Exception):
    def __init__(self, tag: str, charset: str):
        super().__init__(charset)
        self.tag, self.charset = tag, charset


class Cursor:
    """A position in one command's text; literal octets come from ``literals`` keyed by the offset past ``}``."""

    __slots__ = ("buf", "pos", "literals", "utf8_names", "charset", "depth", "keys")

    def __init__(self, buf: bytes, literals: dict[int, tuple[bytes, bool]], utf8_names: bool = False):
        self.buf, self.pos, self.literals, self.utf8_names = buf, 0, literals, utf8_names
        self.charset: str | None = None
        self.depth = 0
        self.keys = 0  # search keys read so far

    def fail(self, what: str) -> SyntaxErr:
        return SyntaxErr(f"{what} at offset {self.pos}")

    def peek(self, n: int = 1) -> bytes:
        return self.buf[self.pos : self.pos + n]

    def maybe(self, token: bytes) -> bool:
        if self.buf.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: bytes) -> None:
        if not self.maybe(token):
            raise self.fail(f"expected {token.decode()!r}")

    def sp(self) -> None:
        self.expect(b" ")

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise self.fail("unexpected characters")

    def match(self, regex: re.Pattern[bytes], what: str) -> re.Match[bytes]:
        m = regex.match(self.buf, self.pos)
        if m is None:
            raise self.fail(f"expected {what}")
        self.pos = m.end()
        return m

    def atom(self) -> str:
        return self.match(_ATOM, "atom").group().decode("ascii")

    def keyword(self) -> str:
        return self.atom().upper()

    def peek_keyword(self) -> str:
        m = _ATOM.match(self.buf, self.pos)
        return m.group().decode("ascii").upper() if m else ""

    def number(self, lo: int = 0, hi: int = MAX_NUMBER) -> int:
        digits = self.match(_NUMBER, "number").group()
        if len(digits) > 19 or not lo <= int(digits) <= hi:
            raise self.fail("number out of range")
        return int(digits)

    def modseq(self) -> int:  # RFC 7162 §7 mod-sequence-valzer (0 tolerated where 1+ is asked)
        return self.number(0, MAX_NUMBER64)

    def literal(self, allow8: bool = False) -> tuple[bytes, bool]:
        m = self.match(_LITERAL, "literal")
        entry = self.literals.get(m.end())
        if entry is None:
            raise self.fail("literal not at end of line")
        if entry[1] and not allow8:
            raise self.fail("literal8 not allowed here")
        self.pos = m.end() + 1  # past the "\n" that ends the fragment
        return entry

    def string(self) -> bytes:  # RFC 3501 §4.3 quoted / literal
        if self.peek() == b'"':
            return _UNESCAPE.sub(rb"\1", self.match(_QUOTED, "quoted string").group(1))
        return self.literal()[0]

    def astring(self) -> bytes:
        m = _ASTRING_ATOM.match(self.buf, self.pos)
        if m:
            self.pos = m.end()
            return m.group()
        return self.string()

    def nstring(self) -> bytes | None:
        if self.peek_keyword() == "NIL":
            self.pos += 3
            return None
        return self.string()

    def text(self) -> str:
        """An astring as text: UTF-8, undecodable octets kept as surrogate escapes."""
        return self.astring().decode("utf-8", "surrogateescape")

    def search_text(self) -> str:
        raw = self.astring()
        try:
            return raw.decode(SEARCH_CHARSETS.get(self.charset or "UTF-8", "utf-8"))
        except UnicodeDecodeError:
            if self.charset is None:  # RFC 3501 §6.4.4 default US-ASCII; we assume UTF-8
                return raw.decode("utf-8", "surrogateescape")
            raise self.fail(f"string is not valid {self.charset}") from None

    def decode_name(self, raw: bytes) -> str:
        """Mailbox-name octets to text (no INBOX folding: references and patterns use this too)."""
        if self.utf8_names:  # RFC 6855 §3
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("mailbox name is not UTF-8") from None
            if any(ch < " " or ch == "\x7f" for ch in name):
                raise self.fail("control character in mailbox name")
            return name
        try:
            return decode_mutf7(raw)  # RFC 3501 §5.1.3
        except ValueError:
            return UnusableName(raw)

    def mailbox(self) -> str:
        name = self.decode_name(self.astring())
        if isinstance(name, UnusableName):
            return name
        return "INBOX" if name.upper() == "INBOX" else name  # RFC 3501 §5.1: INBOX is case-insensitive

    def list_mailbox(self) -> str:  # RFC 3501 §9 list-mailbox = 1*list-char / string
        m = _LIST_ATOM.match(self.buf, self.pos)
        if m:
            self.pos = m.end()
            return self.decode_name(m.group())
        return self.decode_name(self.string())

    def sequence_set(self) -> SequenceSet:
        parsed = parse_sequence_set(self.buf, self.pos)
        if parsed is None:
            raise self.fail("expected sequence set")
        self.pos = parsed[1]
        return parsed[0]

    def flag(self) -> str:  # RFC 3501 §9 flag; system flags in canonical case
        if self.maybe(b"\\"):
            name = "\\" + self.atom()
            return SYSTEM_FLAGS.get(name.lower(), name)
        return self.atom()

    def plist(self, item: Callable[[], object], min_items: int = 0) -> tuple:
        """ "(" [item *(SP item)] ")" """
        self.expect(b"(")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail("nesting too deep")
        items = []
        if not self.maybe(b")"):
            items.append(item())
            while self.maybe(b" "):
                items.append(item())
            self.expect(b")")
        self.depth -= 1
        if len(items) < min_items:
            raise self.fail("empty list")
        return tuple(items)

    def date(self) -> date:  # RFC 3501 §9 date = date-text / DQUOTE date-text DQUOTE
        quoted = self.maybe(b'"')
        m = self.match(_DATE, "date")
        if quoted:
            self.expect(b'"')
        return date(int(m.group(3)), _month(self, m.group(2)), int(m.group(1)))

    def date_time(self) -> datetime:  # RFC 3501 §9 date-time
        m = self.match(_DATE_TIME, "date-time")
        day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
        if int(zm) > 59:
            raise self.fail("bad zone")
        offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == b"-" else 1)
        return datetime(int(year), _month(self, mon), int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset))


def _month(cur: Cursor, mon: bytes) -> int:
    try:
        return MONTHS.index(mon.decode("ascii").upper()) + 1
    except ValueError:
        raise cur.fail("bad month") from None


# ------------------------------------------------------------------ search keys (RFC 3501 §6.4.4)

_SEARCH_FLAGS = {
    "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True), "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True), "RECENT": ("\\Recent", True),
    "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False), "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False), "OLD": ("\\Recent", False),
}  # fmt: skip
_SEARCH_DATES = {
    "BEFORE": ("internal", "before"), "ON": ("internal", "on"), "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"), "SENTON": ("sent", "on"), "SENTSINCE": ("sent", "since"),
}  # fmt: skip
_SEARCH_HEADERS = {"BCC", "CC", "FROM", "SUBJECT", "TO"}
_MODSEQ_ENTRY = re.compile(rb'/flags/(\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+)')


def search_key(cur: Cursor) -> c.SearchKey:
    cur.keys += 1
    if cur.keys > MAX_SEARCH_KEYS:
        raise cur.fail(f"too many search keys (limit {MAX_SEARCH_KEYS})")
    first = cur.peek()
    if first == b"(":
        keys = cur.plist(lambda: search_key(cur), min_items=1)
        return keys[0] if len(keys) == 1 else c.SearchAnd(keys)
    if first and first in b"0123456789*$":
        return c.SearchSeq(cur.sequence_set())
    key = cur.keyword()
    if key in _SEARCH_FLAGS:
        return c.SearchFlag(*_SEARCH_FLAGS[key])
    if key == "ALL":
        return c.SearchAll()
    if key == "NEW":  # RFC 3501 §6.4.4: "functionally equivalent to (RECENT UNSEEN)"
        return c.SearchAnd((c.SearchFlag("\\Recent"), c.SearchFlag("\\Seen", False)))
    cur.sp()
    if key in ("KEYWORD", "UNKEYWORD"):
        return c.SearchFlag(cur.atom(), key == "KEYWORD")
    if key in _SEARCH_DATES:
        return c.SearchDate(*_SEARCH_DATES[key], cur.date())  # type: ignore[arg-type]
    if key in ("LARGER", "SMALLER"):
        return c.SearchSize(key.lower(), cur.number())  # type: ignore[arg-type]
    if key in _SEARCH_HEADERS:
        return c.SearchHeader(key.lower(), cur.search_text())
    if key == "HEADER":
        name = cur.text().lower()
        cur.sp()
        return c.SearchHeader(name, cur.search_text(), by_name=True)
    if key in ("BODY", "TEXT"):
        return c.SearchText(key.lower(), cur.search_text())  # type: ignore[arg-type]
    if key == "UID":
        return c.SearchSeq(cur.sequence_set(), uid=True)
    if key in ("NOT", "OR"):
        cur.depth += 1
        if cur.depth > MAX_NESTING:
            raise cur.fail("search nesting too deep")
        first_key = search_key(cur)
        if key == "NOT":
            result: c.SearchKey = c.SearchNot(first_key)
        else:
            cur.sp()
            result = c.SearchOr(first_key, search_key(cur))
        cur.depth -= 1
        return result
    if key == "MODSEQ":  # RFC 7162 §3.1.5
        entry = kind = None
        if cur.peek() == b'"':  # entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE, backslash escaped
            m = _MODSEQ_ENTRY.fullmatch(cur.string())
            if m is None:
                raise cur.fail("bad entry name")
            entry = m.group(1).decode("ascii")
            entry = SYSTEM_FLAGS.get(entry.lower(), entry)
            cur.sp()
            kind = cur.keyword()
            if kind not in ("PRIV", "SHARED", "ALL"):
                raise cur.fail("bad entry type")
            kind = kind.lower()
            cur.sp()
        return c.SearchModSeq(cur.modseq(), entry, kind)
    raise cur.fail(f"unknown search key {key}")


def fetch_att(cur: Cursor) -> c.FetchItem:
    name = cur.match(_FETCH_NAME, "fetch attribute").group().decode("ascii").upper()
    bracket = cur.peek() == b"["
    if bracket and name in ("BODY", "BODY.PEEK"):
        section = section_spec(cur)
        return c.FetchBody(section, partial_range(cur), name == "BODY.PEEK")
    if bracket and name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):  # RFC 3516 §4.2
        cur.pos += 1
        part = section_part(cur)
        cur.expect(b"]")
        if name == "BINARY.SIZE":
            return c.FetchBinarySize(part)
        return c.FetchBody(c.Section(part), partial_range(cur), name == "BINARY.PEEK", binary=True)
    if name in c.FETCH_ATTS:
        return c.FetchAtt(name)
    raise cur.fail(f"unknown fetch attribute {name}")


def section_part(cur: Cursor) -> tuple[int, ...]:
    m = _PART.match(cur.buf, cur.pos)
    if m is None:
        return ()
    nums = m.group().split(b".")
    if any(len(n) > 10 or not 0 < int(n) <= MAX_NUMBER for n in nums):  # section-part is nz-number
        raise cur.fail("bad section part")
    cur.pos = m.end()
    return tuple(int(n) for n in nums)


def section_spec(cur: Cursor) -> c.Section:  # RFC 3501 §9 section-spec
    cur.expect(b"[")
    part = section_part(cur)
    text = None
    if (not part and cur.peek() != b"]") or (part and cur.maybe(b".")):
        text = cur.match(_SECTION_TEXT, "section text").group().decode("ascii").upper()
        if text == "MIME" and not part:
            raise cur.fail("MIME needs a part number")
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        cur.sp()
        fields = cur.plist(cur.text, min_items=1)
    cur.expect(b"]")
    return c.Section(part, text, fields)  # type: ignore[arg-type]


def partial_range(cur: Cursor) -> tuple[int, int] | None:
    if cur.peek() != b"<":
        return None
    m = cur.match(_PARTIAL, "partial")
    offset, length = int(m.group(1)), int(m.group(2))
    if offset > MAX_NUMBER or not 0 < length <= MAX_NUMBER:
        raise cur.fail("bad partial range")
    return offset, length
