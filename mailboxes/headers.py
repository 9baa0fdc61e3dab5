"""Header fields read one way for everyone: the field scanner, address lists, size limits and the originator check.

Implementation notes
- design.md "One parser per format": ENVELOPE and the stored parse (mime.py), the
  submission From/Sender check (delivery/policy.py), the DKIM signing domain
  (delivery/submit.py) and the own-domain check on mail from outside
  (delivery/accept.py) all read header fields through `scan_header` and
  `parse_addresses` here. Two parsers that disagree are a spoofing hole.
- `originator` refuses what another reader could see differently: more than
  one From (or Sender) field, counting every spelling some parser reads as one
  (`From :`, `FROM\t:`, a field after a bare CR or after a line we take for
  the start of the body), and a From that is not a plain RFC 5322 §3.4
  mailbox-list or whose strict and lenient readings differ.
- Work is bounded: `header_problem` checks the header block, each field, its
  RFC 2047 encoded words and addresses against the limits below before
  anything parses a value, and reads at most MAX_HEADER_BLOCK + 1 octets.
"""

from __future__ import annotations

import functools

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from mailboxes.charsets import comment_end, decode_header_value, quoted_string

__all__ = [
    "Address", "HeaderProblem", "Originator", "MAX_HEADER_BLOCK", "MAX_FIELD", "MAX_ENCODED_WORDS",
    "MAX_ADDRESSES", "scan_header", "field_value", "header_fields", "parse_addresses", "header_problem",
    "originator", "without_fields", "lax_lines",
]

# Limits on what a message header may cost (SMTP refuses beyond them; RFC 5322 §2.1.1 lines are
# 998 octets, so these leave room for long Received chains, signatures and big To lists).
MAX_HEADER_BLOCK = 256 * 1024   # octets of the top-level header block, blank line excluded
MAX_FIELD = 64 * 1024           # octets of one field, its folded lines together
MAX_ENCODED_WORDS = 1000        # RFC 2047 encoded words ("=?") in one field
MAX_ADDRESSES = 2000            # addresses ("@") in one address field

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
# Everything but the letters and digits of a field name: what a lax reader may skip or misread.
_NOT_NAME = bytes(b for b in range(256) if not (chr(b).isascii() and chr(b).isalnum()))

ADDRESS_FIELDS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc",
                            "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc"})

MISSING_MAILBOX = "MISSING_MAILBOX"  # as Dovecot: a NIL host would read as a group marker
MISSING_DOMAIN = "MISSING_DOMAIN"    # (RFC 3501 §7.4.2), so missing parts are named instead

@dataclass(frozen=True, slots=True)
class Address:
    """RFC 3501 §7.4.2 address; a group start has only `mailbox` (the group name), a group end nothing."""
    name: str | None             # raw display name (may hold RFC 2047 words)
    adl: str | None              # source route, "@a,@b"
    mailbox: str | None
    host: str | None
    name_decoded: str | None = None

    @property
    def is_group_start(self) -> bool:
        return self.host is None and self.mailbox is not None

    @property
    def is_group_end(self) -> bool:
        return self.host is None and self.mailbox is None

    @property
    def addr_spec(self) -> str | None:
        return None if self.host is None else f"{self.mailbox}@{self.host}"

# --- header scanning on bytes ------------------------------------------------------------

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*")   # RFC 5322 §3.6.8 ftext, obs WSP


def scan_header(raw: bytes, start: int, end: int) -> tuple[list[list], int]:
    """Header fields of the entity at raw[start:end] as [name, start, colon, end], and body start.

    RFC 5322 §2.1: fields, then an empty line, then the body. The first line that is neither
    a field nor a continuation starts the body (no blank line: a broken but common case).
    """
    fields: list[list] = []
    pos = start
    find = raw.find
    while pos < end:
        nl = find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        first = raw[pos]
        if first == 0x0A or (first == 0x0D and not raw[pos:line_end].strip(b"\r\n")):
            return fields, line_end
        if first == 0x20 or first == 0x09:   # RFC 5322 §2.2.3 folded continuation
            if fields:
                fields[-1][3] = line_end
            pos = line_end
            continue
        colon = find(b":", pos, line_end)
        if colon < 0 or not _FIELD_NAME.fullmatch(raw, pos, colon):
            if pos == start and raw.startswith(b"From ", pos):   # mbox separator line
                pos = line_end
                continue
            return fields, pos
        fields.append([raw[pos:colon].rstrip(b" \t").lower().decode("ascii"), pos, colon, line_end])
        pos = line_end
    return fields, end


def field_value(raw: bytes, field: list) -> str:
    value = raw[field[2] + 1:field[3]].replace(b"\r\n", b"").replace(b"\n", b"")
    return value.strip(b" \t\r").decode("utf-8", "surrogateescape")

@functools.lru_cache(maxsize=64)
def _wanted_fields(names: tuple) -> frozenset[str]:
    """The lower-cased field names, made once per list (a FETCH asks the same list of every message)."""
    return frozenset(n.decode("ascii", "replace").lower() if isinstance(n, bytes) else n.lower() for n in names)


def header_fields(raw: bytes, names, exclude: bool = False) -> bytes:
    """BODY[HEADER.FIELDS (names)] / HEADER.FIELDS.NOT of the header block at the start of raw.

    RFC 3501 §6.4.5: the matching lines as they are (folding kept), then the blank line.
    For a message/rfc822 part, pass the slice given by section_range(body, path, "HEADER").
    """
    wanted = _wanted_fields(tuple(names))
    fields, _ = scan_header(raw, 0, len(raw))
    out = []
    for name, start, _colon, end in fields:
        if (name in wanted) != exclude:
            line = raw[start:end]
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)

# --- addresses (RFC 5322 §3.4, with the obsolete and broken forms real mail has) ---------

_ADDR_TOKEN = re.compile(r'''
    (?P<ws>[ \t\r\n]+)
  | (?P<q>"(?:[^"\\]|\\.)*"?)
  | (?P<c>\()
  | (?P<lit>\[[^\]]*\]?)
  | (?P<atom>[^ \t\r\n()<>@,;:\\".\[\]]+)
  | (?P<sp>[<>@,;:.\\\])])
''', re.X | re.S)


def _addr_tokens(s: str, broken: list | None = None) -> list[tuple[str, str, bool]]:
    """(kind, text, whitespace_before); kinds: atom, q, lit, c (comment) or the special itself.

    An unterminated quoted string, comment or literal is read to the end (as before);
    with `broken`, each one is also noted there for the strict reading.
    """
    toks = []
    i, n, space = 0, len(s), False
    while i < n:
        m = _ADDR_TOKEN.match(s, i)
        kind = m.lastgroup
        if kind == "ws":
            space = True
            i = m.end()
            continue
        if kind == "c":
            j = comment_end(s, i)
            if broken is not None and s[j - 1:j] != ")":
                broken.append("comment")
            toks.append(("c", s[i + 1:j - 1] if s[j - 1:j] == ")" else s[i + 1:j], space))
            i = j
        elif kind == "q":
            text, _ = quoted_string(s, i)
            if broken is not None and not _terminated_quote(m.group()):
                broken.append("quoted-string")
            toks.append(("q", text, space))
            i = m.end()
        elif kind == "sp":
            toks.append((m.group(), m.group(), space))
            i = m.end()
        else:
            if broken is not None and kind == "lit" and not m.group().endswith("]"):
                broken.append("literal")
            toks.append(("atom" if kind == "atom" else "lit", m.group(), space))
            i = m.end()
        space = False
    return toks


def _join(toks, spaced: bool) -> str:
    """Token texts; with `spaced`, one space where the header had whitespace (phrases)."""
    out = []
    for kind, text, space in toks:
        if kind == "c":
            continue
        if spaced and out and space:
            out.append(" ")
        out.append(text)
    return "".join(out)


def _addr_spec(toks) -> tuple[str | None, str | None, str | None]:
    """(adl, mailbox, host) from tokens of an addr-spec, optionally led by an obs-route."""
    toks = [t for t in toks if t[0] != "c"]
    adl = None
    if toks and toks[0][0] == "@":
        colon = next((k for k, t in enumerate(toks) if t[0] == ":"), None)
        if colon is not None:
            adl = _join(toks[:colon], False)
            toks = toks[colon + 1:]
    at = next((k for k in range(len(toks) - 1, -1, -1) if toks[k][0] == "@"), None)
    if at is None:
        return adl, _join(toks, True) or None, None
    return adl, _join(toks[:at], False) or None, _join(toks[at + 1:], False) or None


def _mailbox(toks, i: int, stops: str, hint: str | None) -> tuple[Address | None, int]:
    n = len(toks)
    phrase, comments, angle = [], [], None
    while i < n and toks[i][0] not in stops:
        kind = toks[i][0]
        if kind == "<" and angle is None:
            j, inner = i + 1, []
            while j < n and toks[j][0] != ">":
                if toks[j][0] in stops and not (inner and inner[0][0] == "@"):
                    break
                inner.append(toks[j])
                j += 1
            angle = inner
            i = j + 1 if j < n and toks[j][0] == ">" else j
            continue
        if kind == "c":
            comments.append(toks[i][1])
        elif angle is None:
            phrase.append(toks[i])
        i += 1
    if angle is not None:
        name = _join(phrase, True) or None
        adl, local, host = _addr_spec(angle)
    elif not phrase:
        return None, i   # only comments: CFWS, not a mailbox (RFC 5322 §3.2.2), e.g. "group: (foo) ;"
    else:
        adl, local, host = _addr_spec(phrase)
        name = comments[-1].strip() if comments and comments[-1].strip() else None
    if local is None and host is None and name is None:
        return None, i
    decoded = None if name is None else decode_header_value(name, hint)
    return Address(name, adl, local or MISSING_MAILBOX, host or MISSING_DOMAIN, decoded), i


def parse_addresses(value: str | None, hint: str | None = None) -> tuple[Address, ...]:
    """RFC 3501 §7.4.2 address list, groups as start/end markers; ";" also separates (Outlook)."""
    if not value:
        return ()
    toks = _addr_tokens(value)
    out: list[Address] = []
    i, n = 0, len(toks)
    while i < n:
        if toks[i][0] in ",;>":
            i += 1
            continue
        j = i
        while j < n and toks[j][0] not in ":<@,;":
            j += 1
        if j < n and toks[j][0] == ":" and j > i:   # RFC 5322 §3.4 group
            out.append(Address(None, None, _join(toks[i:j], True), None))
            i = j + 1
            while i < n and toks[i][0] != ";":
                if toks[i][0] in ",:":
                    i += 1
                    continue
                addr, i = _mailbox(toks, i, ",;", hint)
                if addr is not None:
                    out.append(addr)
            out.append(Address(None, None, None, None))
            i += 1
            continue
        addr, i = _mailbox(toks, i, ",;", hint)
        if addr is not None:
            out.append(addr)
    return tuple(out)


def _terminated_quote(text: str) -> bool:
    """Does a quoted-string token end with an unescaped quote?"""
    if len(text) < 2 or not text.endswith('"'):
        return False
    backslashes = len(text) - 1 - len(text[:-1].rstrip("\\"))
    return backslashes % 2 == 0


# --- limits --------------------------------------------------------------------------------

class HeaderProblem(enum.Enum):
    """Why a header block or an originator field is refused."""

    BLOCK_TOO_BIG = "header block too big"
    FIELD_TOO_LONG = "header field too long"
    TOO_MANY_ENCODED_WORDS = "too many encoded words in one header field"
    TOO_MANY_ADDRESSES = "too many addresses in one header field"
    NO_FROM = "no From field"
    SEVERAL_FROM = "more than one From field"
    BAD_FROM = "From field cannot be parsed"
    SEVERAL_SENDER = "more than one Sender field"
    BAD_SENDER = "Sender field cannot be parsed"

    @property
    def is_size(self) -> bool:
        return self in (HeaderProblem.BLOCK_TOO_BIG, HeaderProblem.FIELD_TOO_LONG,
                        HeaderProblem.TOO_MANY_ENCODED_WORDS, HeaderProblem.TOO_MANY_ADDRESSES)


def _top_fields(raw: bytes) -> tuple[list[list], int, HeaderProblem | None]:
    """The top-level fields read from at most MAX_HEADER_BLOCK + 1 octets, the body start, and a size problem."""
    window = min(len(raw), MAX_HEADER_BLOCK + 1)
    fields, body_start = scan_header(raw, 0, window)
    blank = body_start > 0 and not raw[raw.rfind(b"\n", 0, body_start - 1) + 1:body_start].strip(b"\r\n")
    if body_start > MAX_HEADER_BLOCK or (
            not blank and window < len(raw) and raw.find(b"\n", body_start, window) < 0):
        # The scan ran through the window, or stopped on a line the window cuts: no end in sight.
        return fields, body_start, HeaderProblem.BLOCK_TOO_BIG
    for name, start, _colon, end in fields:
        if end - start > MAX_FIELD:
            return fields, body_start, HeaderProblem.FIELD_TOO_LONG
        if raw.count(b"=?", start, end) > MAX_ENCODED_WORDS:
            return fields, body_start, HeaderProblem.TOO_MANY_ENCODED_WORDS
        if name in ADDRESS_FIELDS and raw.count(b"@", start, end) > MAX_ADDRESSES:
            return fields, body_start, HeaderProblem.TOO_MANY_ADDRESSES
    return fields, body_start, None


def header_problem(raw: bytes) -> HeaderProblem | None:
    """The first size limit the top-level header of `raw` breaks, or None; linear, reads <= 256 KiB."""
    return _top_fields(raw)[2]


def without_fields(raw: bytes, drop: Callable[[str, bytes], bool]) -> bytes:
    """`raw` without the top-level fields for which drop(name, field octets) is true.

    Names are as `scan_header` reads them (lower case, `Name :` counts as `name`).
    Call it on a message whose header passed `header_problem`.
    """
    fields, _ = scan_header(raw, 0, min(len(raw), MAX_HEADER_BLOCK + 1))
    out, pos = [], 0
    for name, start, _colon, end in fields:
        if drop(name, raw[start:end]):
            out.append(raw[pos:start])
            pos = end
    if pos == 0:
        return raw
    out.append(raw[pos:])
    return b"".join(out)


def lax_lines(field: bytes) -> list[tuple[bytes, bytes]]:
    """(lax name, value) of every line of a field that some reader could take for a field of its own.

    The first line is the field itself; a bare CR or LF inside it starts another
    line for lax readers. Continuation lines (leading WSP) belong to the line before.
    """
    out: list[tuple[bytes, bytes]] = []
    for line in _LINE_BREAK.split(field):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + b" " + line)
            continue
        colon = line.find(b":")
        if colon > 0:
            out.append((line[:colon].lower().translate(None, _NOT_NAME), line[colon + 1:]))
    return out


# --- the originator: From and Sender (RFC 5322 §3.6.2) ---------------------------------------



def _lax_name_counts(raw: bytes, names: tuple[bytes, ...]) -> dict[bytes, int]:
    """How often a lax reader could find each field name in the header.

    Lines are split at CRLF, a bare CR or a bare LF, the header runs to the first empty
    line (not to the first line we take for body), and a name is compared with spaces,
    controls and other bytes removed, so `From :`, `FROM\t:` and `Fr\x00om:` all count.
    """
    counts = dict.fromkeys(names, 0)
    pos, end = 0, min(len(raw), MAX_HEADER_BLOCK + 1)
    for m in _LINE_BREAK.finditer(raw, 0, end):
        line_start, pos = pos, m.end()
        if m.start() == line_start:
            return counts   # the empty line: the body starts here for every reader
        if raw[line_start] in b" \t":
            continue
        colon = raw.find(b":", line_start, m.start())
        if colon > 0:
            name = raw[line_start:colon].lower().translate(None, _NOT_NAME)
            if name in counts:
                counts[name] += 1
    return counts


def _words(toks: list, allow_dots: bool) -> bool:
    """word *("." word), the local-part / domain shape (RFC 5322 §3.4.1, obs-local-part)."""
    if not toks or len(toks) % 2 == 0:
        return False
    for k, (kind, _text, _space) in enumerate(toks):
        if k % 2 == 1:
            if kind != ".":
                return False
        elif kind not in (("atom", "q") if allow_dots else ("atom",)):
            return False
    return True


def _strict_addr_spec(toks: list) -> tuple[str, str] | None:
    """addr-spec = local-part "@" domain, nothing else (RFC 5322 §3.4.1)."""
    ats = [k for k, t in enumerate(toks) if t[0] == "@"]
    if len(ats) != 1:
        return None
    local, domain = toks[:ats[0]], toks[ats[0] + 1:]
    if not _words(local, True):
        return None
    if not (_words(domain, False) or (len(domain) == 1 and domain[0][0] == "lit")):
        return None
    return _join(local, False), _join(domain, False)


def _strict_mailbox_list(value: str) -> list[tuple[str, str]] | None:
    """The addr-specs of a plain RFC 5322 §3.4 mailbox-list (no groups, no obs-route), or None."""
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
        return None
    broken: list = []
    toks = [t for t in _addr_tokens(value, broken) if t[0] != "c"]
    if broken:
        return None
    out: list[tuple[str, str]] = []
    i, n = 0, len(toks)
    while True:
        j = i
        while j < n and toks[j][0] in ("atom", "q", "."):
            j += 1
        if j < n and toks[j][0] == "<":   # name-addr = [phrase] angle-addr
            if j > i and toks[i][0] == ".":
                return None   # a phrase starts with a word (obs-phrase allows dots after)
            k = j + 1
            while k < n and toks[k][0] not in "<>,":
                k += 1
            if k >= n or toks[k][0] != ">":
                return None
            spec = _strict_addr_spec(toks[j + 1:k])
            i = k + 1
        else:                              # addr-spec
            k = i
            while k < n and toks[k][0] != ",":
                k += 1
            spec = _strict_addr_spec(toks[i:k])
            i = k
        if spec is None:
            return None
        out.append(spec)
        if i == n:
            return out
        if toks[i][0] != ",":
            return None
        i += 1


def _mailboxes(raw: bytes, field: list) -> tuple[Address, ...] | None:
    """The field's mailboxes as ENVELOPE reads them, if the strict reading agrees; else None."""
    value = field_value(raw, field)
    strict = _strict_mailbox_list(value)
    if not strict:
        return None
    lenient = parse_addresses(value)
    seen = [((a.mailbox or "").lower(), (a.host or "").lower()) for a in lenient]
    if seen != [(local.lower(), domain.lower()) for local, domain in strict]:
        return None
    return lenient


@dataclass(frozen=True, slots=True)
class Originator:
    """Who a message says it is from, read as ENVELOPE reads it; `problem` says why it cannot be trusted."""

    from_: tuple[Address, ...] = ()
    sender: tuple[Address, ...] = ()
    problem: HeaderProblem | None = None

    @property
    def from_domains(self) -> frozenset[str]:
        return frozenset((a.host or "").lower().rstrip(".") for a in self.from_ if a.host)


def originator(raw: bytes) -> Originator:
    """Read From and Sender of a message's top-level header (RFC 5322 §3.6.2) strictly and once.

    Exactly one From field is required, and at most one Sender; each must be a plain
    mailbox-list that the strict and the lenient (ENVELOPE) readings see alike.
    """
    fields, _body_start, problem = _top_fields(raw)
    if problem is not None:
        return Originator(problem=problem)
    froms = [f for f in fields if f[0] == "from"]
    senders = [f for f in fields if f[0] == "sender"]
    lax = _lax_name_counts(raw, (b"from", b"sender"))
    if len(froms) > 1 or lax[b"from"] > 1 or lax[b"from"] != len(froms):
        return Originator(problem=HeaderProblem.SEVERAL_FROM if max(len(froms), lax[b"from"]) > 1
                          else HeaderProblem.BAD_FROM)
    if not froms:
        return Originator(problem=HeaderProblem.NO_FROM)
    from_ = _mailboxes(raw, froms[0])
    if from_ is None:
        return Originator(problem=HeaderProblem.BAD_FROM)
    if len(senders) > 1 or lax[b"sender"] > 1 or lax[b"sender"] != len(senders):
        return Originator(from_, problem=HeaderProblem.SEVERAL_SENDER if max(len(senders), lax[b"sender"]) > 1
                          else HeaderProblem.BAD_SENDER)
    sender: tuple[Address, ...] = ()
    if senders:
        parsed = _mailboxes(raw, senders[0])
        if parsed is None or len(parsed) != 1:   # RFC 5322 §3.6.2: Sender is one mailbox
            return Originator(from_, problem=HeaderProblem.BAD_SENDER)
        sender = parsed
    return Originator(from_, sender)
