"""Parse once: a raw message becomes its envelope, body structure with byte offsets, decoded headers and search text.

Implementation notes
- `parse_message` never raises on broken MIME. It works on the raw bytes with its own header
  and boundary scanner, so every part carries exact offsets (header_start <= body_start <=
  body_end) and IMAP BODY[section] is a slice of the stored blob, never a re-parse.
- Header values are kept RAW for IMAP (unfolded per RFC 5322 §2.2.3, leading/trailing
  whitespace removed) as str decoded with UTF-8 + surrogateescape: valid UTF-8 reads as
  text and 8-bit GBK/Big5 bytes come back byte-for-byte via `charsets.raw_bytes`.
- Offsets are octets of the stored blob. They equal what IMAP clients count only if the blob
  has CRLF line ends (as SMTP and APPEND deliver); LF-only input is indexed but not rewritten.
- Part numbering follows RFC 3501 §6.4.5; see `find_part`, `iter_parts` and `section_range`.
- ENVELOPE (RFC 3501 §7.4.2) takes the first Date, Subject, In-Reply-To and Message-ID, and the
  addresses of every From, Sender, Reply-To, To, Cc and Bcc field in header order, each field
  parsed on its own (Cyrus concatenates the same way; Dovecot keeps only the last field of each,
  so the recipients of an earlier Cc vanish there). RFC 5322 §3.6 allows one of each; broken
  mail repeats them. Stored parses are not redone: older messages keep the envelope they got.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Iterator

from mailboxes.charsets import (
    MIME_TOKEN, codec_for, decode_header_value, decode_text, decode_transfer,
    decoded_params, html_charset, html_to_text, parse_params, raw_bytes, skip_cfws,
)
from mailboxes.headers import (  # noqa: F401 - Address and header_fields are re-exported
    Address, field_value, header_fields, parse_addresses, scan_header,
)
from mailboxes.mimewalk import end_before_delimiter, next_delimiter

__all__ = [
    "Address", "Envelope", "BodyPart", "EmbeddedMessage", "Attachment", "ParsedMessage",
    "parse_message", "find_part", "iter_parts", "section_range", "header_fields",
    "decode_header_value", "decoded_params",
]

log = logging.getLogger(__name__)

MAX_DEPTH = 50                 # nesting of multiparts and message/rfc822 we descend into
MAX_PARTS = 2000               # body parts per message; further parts stay inside their parent
MAX_TEXT_CHARS = 1 << 20       # the search text extract is cut at 1 Mi characters
MAX_TEXT_PART_OCTETS = 8 << 20  # encoded octets read from one text part for the extract
HINT_SCAN_OCTETS = 256 << 10   # how far to look for a declared charset to decode raw 8-bit headers

# Headers kept decoded for SEARCH and the webmail (all occurrences, top-level header only).
SEARCH_HEADERS = ("subject", "from", "to", "cc", "bcc", "reply-to", "sender", "date",
                  "message-id", "in-reply-to", "references", "list-id")



# --- the stored shapes -------------------------------------------------------------------



@dataclass(frozen=True, slots=True)
class Envelope:
    """RFC 3501 §7.4.2 ENVELOPE with raw values, plus decoded forms for webmail and SEARCH."""
    date: str | None = None
    subject: str | None = None
    from_: tuple[Address, ...] = ()
    sender: tuple[Address, ...] = ()      # defaults to from_ (RFC 3501 §7.4.2)
    reply_to: tuple[Address, ...] = ()    # defaults to from_
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    in_reply_to: str | None = None
    message_id: str | None = None
    subject_decoded: str = ""
    date_parsed: datetime | None = None   # aware; for SENTBEFORE / SENTON / SENTSINCE


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One MIME entity: what BODYSTRUCTURE needs, plus its byte range in the raw message.

    `params` and `disposition_params` are in header form: names lowercased, RFC 2231
    continuations merged into one `name*` value (as Dovecot does), values not decoded;
    `decoded_params()` gives the decoded view. Offsets: MIME header is
    raw[header_start:body_start] (blank line included), body is raw[body_start:body_end].
    """
    type: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()
    id: str | None = None
    description: str | None = None
    encoding: str = "7bit"
    size: int = 0                        # octets of the encoded body
    lines: int | None = None             # text/* and message/rfc822 only
    md5: str | None = None
    disposition: str | None = None
    disposition_params: tuple[tuple[str, str], ...] = ()
    language: tuple[str, ...] = ()
    location: str | None = None
    header_start: int = 0
    body_start: int = 0
    body_end: int = 0
    parts: tuple[BodyPart, ...] = ()              # multipart children
    message: EmbeddedMessage | None = None        # message/rfc822 content

    @property
    def content_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    def param(self, name: str) -> str | None:
        """A Content-Type parameter in header form (not decoded), e.g. charset or boundary."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def filename(self) -> str | None:
        """Decoded file name: Content-Disposition filename, else Content-Type name."""
        return _filename(self, None)


@dataclass(frozen=True, slots=True)
class EmbeddedMessage:
    envelope: Envelope
    body: BodyPart   # header_start == the message/rfc822 part's body_start


@dataclass(frozen=True, slots=True)
class Attachment:
    path: tuple[int, ...]
    filename: str | None
    content_type: str
    size: int        # decoded octets for base64 (counted, not decoded), encoded octets otherwise


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    size: int
    header_end: int                               # end of the top-level header incl. blank line
    envelope: Envelope
    body: BodyPart
    headers_decoded: tuple[tuple[str, str], ...]
    text: str
    attachments: tuple[Attachment, ...]

    def to_json(self, *, include_text: bool = True) -> str:
        """Compact JSON; the store may keep `text` in the search index only (include_text=False)."""
        return _dumps(self, include_text)

    @classmethod
    def from_json(cls, data: str | bytes) -> ParsedMessage:
        return _loads(data)


# --- header fields (scanning and addresses live in headers.py) ---------------------------

# Fields the body structure and the envelope read (first occurrence of each).
_STRUCTURE_FIELDS = frozenset({
    "content-type", "content-transfer-encoding", "content-disposition", "content-id",
    "content-description", "content-md5", "content-language", "content-location",
    "date", "subject", "in-reply-to", "message-id",
})
# Envelope address fields: every occurrence is read (RFC 5322 §3.6 allows one of each; broken mail
# repeats To and Cc, and a recipient in the second field must not vanish from ENVELOPE).
_ENVELOPE_ADDRESS_FIELDS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc"})


def _first_fields(raw: bytes, fields: list[list]) -> dict:
    """Name -> value of the first occurrence; for an envelope address field, name -> all values in order."""
    values: dict = {}
    for field in fields:
        name = field[0]
        if name in _ENVELOPE_ADDRESS_FIELDS:
            values.setdefault(name, []).append(field_value(raw, field))
        elif name in _STRUCTURE_FIELDS and name not in values:
            values[name] = field_value(raw, field)
    return values


def header_lines(raw: bytes) -> list[str]:
    """Every field of the top-level header as "name: decoded value" (RFC 3501 §6.4.4 TEXT reads them all)."""
    fields, _ = scan_header(raw, 0, len(raw))
    return _lines(raw, fields, _charset_hint(raw))


def _lines(raw: bytes, fields: list[list], hint: str | None) -> list[str]:
    return [f"{f[0]}: {decode_header_value(field_value(raw, f), hint)}" for f in fields]


# --- Content-* values --------------------------------------------------------------------

def _parse_content_type(value: str) -> tuple[str | None, str | None, tuple]:
    i = skip_cfws(value, 0)
    m = MIME_TOKEN.match(value, i)
    main = sub = None
    if m:
        main = m.group().lower()
        i = skip_cfws(value, m.end())
        if i < len(value) and value[i] == "/":
            i = skip_cfws(value, i + 1)
            m = MIME_TOKEN.match(value, i)
            if m:
                sub = m.group().lower()
                i = m.end()
    return main, sub, parse_params(value, i)


def _parse_token_value(value: str | None) -> tuple[str | None, tuple]:
    if value is None:
        return None, ()
    i = skip_cfws(value, 0)
    m = MIME_TOKEN.match(value, i)
    if m is None:
        return None, ()
    return m.group().lower(), parse_params(value, m.end())


def _parse_encoding(value: str | None) -> str:
    if value is not None:
        m = MIME_TOKEN.match(value, skip_cfws(value, 0))
        if m is not None and skip_cfws(value, m.end()) == len(value):
            return m.group().lower()
    return "7bit"   # missing or invalid (e.g. "?invalid"): the RFC 2045 §6.1 default




def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)   # RFC 5322 §3.3, obsolete forms included
    except (TypeError, ValueError, IndexError, OverflowError):
        try:   # some office systems write ISO 8601 ("2024-03-04 09:15:00+08:00")
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _addresses(values: dict, name: str, hint: str | None) -> tuple[Address, ...]:
    """The addresses of every `name` field in header order, each field parsed on its own
    (an unterminated quote or comment in one field cannot swallow the next)."""
    return tuple(a for value in values.get(name, ()) for a in parse_addresses(value, hint))


def _envelope(values: dict, hint: str | None) -> Envelope:
    """RFC 3501 §7.4.2 ENVELOPE: the first Date, Subject, In-Reply-To and Message-ID; the addresses
    of all From, Sender, Reply-To, To, Cc and Bcc fields, concatenated in header order."""
    from_ = _addresses(values, "from", hint)
    subject = values.get("subject")
    date = values.get("date")
    return Envelope(
        date=date, subject=subject, from_=from_,
        sender=_addresses(values, "sender", hint) or from_,
        reply_to=_addresses(values, "reply-to", hint) or from_,
        to=_addresses(values, "to", hint),
        cc=_addresses(values, "cc", hint),
        bcc=_addresses(values, "bcc", hint),
        in_reply_to=values.get("in-reply-to"), message_id=values.get("message-id"),
        subject_decoded="" if subject is None else decode_header_value(subject, hint),
        date_parsed=_parse_date(date),
    )


# --- the body structure tree -------------------------------------------------------------

class _TreeBuilder:
    def __init__(self, raw: bytes, hint: str | None) -> None:
        self.raw = raw
        self.hint = hint
        self.parts_left = MAX_PARTS
        self.top_fields: list[list] = []
        self.stop = 0   # set by children(): where the last multipart's close delimiter line ended

    def children(self, start: int, end: int, boundary: bytes, depth: int,
                 default: tuple[str, str]) -> tuple[BodyPart, ...]:
        """The body parts of the multipart body raw[start:end]; self.stop: the end of its close delimiter line.

        A missing close delimiter ends the last part at the end of the body. A child multipart
        that declares its parent's boundary again (Outlook Express for Mac does; RFC 2046 §5.1.2
        forbids it) owns the delimiter lines up to its own close delimiter, as in Dovecot, where
        the newest multipart claims a boundary first; the parent goes on after that line, so
        the parts that follow (the attachment) stay visible.
        """
        raw = self.raw
        delim = b"--" + boundary
        found = next_delimiter(raw, start, end, delim)
        out: list[BodyPart] = []
        while found is not None and not found[2] and self.parts_left > 0:
            part_start = found[1]
            found = next_delimiter(raw, part_start, end, delim)
            part_end = end if found is None else end_before_delimiter(raw, part_start, found[0])
            budget = self.parts_left
            child = self.entity(part_start, part_end, depth + 1, default)[0]
            own = child.param("boundary") if child.is_multipart else None
            if found is not None and own is not None and raw_bytes(own) == boundary and depth + 1 < MAX_DEPTH:
                self.parts_left = budget
                child = self.entity(part_start, end, depth + 1, default)[0]
                found = next_delimiter(raw, self.stop, end, delim)
                part_end = end if found is None else end_before_delimiter(raw, child.body_start, found[0])
                child = replace(child, body_end=part_end, size=part_end - child.body_start)
            out.append(child)
        self.stop = end if found is None else found[1]
        return tuple(out)

    def entity(self, start: int, end: int, depth: int, default: tuple[str, str]) -> tuple[BodyPart, dict]:
        """The entity at raw[start:end] and its header values (see _first_fields)."""
        raw = self.raw
        self.parts_left -= 1
        fields, body_start = scan_header(raw, start, end)
        if depth == 0:
            self.top_fields = fields
        values = _first_fields(raw, fields)
        main, sub, params = _parse_content_type(values["content-type"]) \
            if "content-type" in values else (None, None, ())
        if not main or not sub:   # RFC 2045 §5.2 default (RFC 2046 §5.1.5 in a digest)
            main, sub = default
        disposition, disposition_params = _parse_token_value(values.get("content-disposition"))
        language = values.get("content-language")
        parts: tuple[BodyPart, ...] = ()
        message = None
        lines = None
        if main == "multipart":
            boundary = next((v for k, v in params if k == "boundary"), None)
            if boundary is None and any(k.startswith("boundary*") for k, _ in params):
                boundary = decoded_params(params).get("boundary")   # RFC 2231 §4: boundary*=''value
            if boundary and depth < MAX_DEPTH:
                child_default = ("message", "rfc822") if sub == "digest" else ("text", "plain")
                parts = self.children(body_start, end, raw_bytes(boundary), depth, child_default)
        elif main == "text":
            lines = raw.count(b"\n", body_start, end)
        elif main == "message" and sub == "rfc822":
            lines = raw.count(b"\n", body_start, end)
            if depth < MAX_DEPTH and self.parts_left > 0:
                inner, inner_values = self.entity(body_start, end, depth + 1, ("text", "plain"))
                message = EmbeddedMessage(_envelope(inner_values, self.hint), inner)
        part = BodyPart(
            type=main, subtype=sub, params=params,
            id=values.get("content-id"), description=values.get("content-description"),
            encoding=_parse_encoding(values.get("content-transfer-encoding")),
            size=end - body_start, lines=lines, md5=values.get("content-md5"),
            disposition=disposition, disposition_params=disposition_params,
            language=tuple(t for t in (x.strip() for x in language.split(",")) if t)
            if language else (),
            location=values.get("content-location"),
            header_start=start, body_start=body_start, body_end=end,
            parts=parts, message=message,
        )
        return part, values


# --- RFC 3501 §6.4.5 part numbering ------------------------------------------------------

def find_part(body: BodyPart, path: tuple[int, ...]) -> BodyPart | None:
    """The part named by an IMAP section path; () is the message itself.

    RFC 3501 §6.4.5: a multipart's children are 1..n; a non-multipart body is part 1 of its
    message; below a message/rfc822 part, numbers address the embedded message's body.
    """
    node = body
    for depth, number in enumerate(path):
        if node.is_multipart and not node.parts:
            # No usable boundary: BODYSTRUCTURE shows one empty text/plain part (render.py), so
            # that part exists and is empty, at the start of the multipart's body.
            if number != 1 or depth != len(path) - 1:
                return None
            return BodyPart("text", "plain", header_start=node.body_start, body_start=node.body_start,
                            body_end=node.body_start, lines=0)
        if node.is_multipart:
            if not 1 <= number <= len(node.parts):
                return None
            part = node.parts[number - 1]
        elif number == 1:
            part = node
        else:
            return None
        if depth == len(path) - 1:
            return part
        if part.message is not None:
            node = part.message.body
        elif part.is_multipart and part is not node:
            node = part
        else:
            return None
    return node


def iter_parts(body: BodyPart, prefix: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], BodyPart]]:
    """(path, part) for every part below a message body, in order, with RFC 3501 §6.4.5 paths."""
    if body.is_multipart:
        for number, child in enumerate(body.parts, 1):
            yield from _iter_child(child, prefix + (number,))
    else:
        yield from _iter_child(body, prefix + (1,))


def _iter_child(part: BodyPart, path: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], BodyPart]]:
    yield path, part
    if part.is_multipart and part.parts:
        for number, child in enumerate(part.parts, 1):
            yield from _iter_child(child, path + (number,))
    elif part.message is not None:
        yield from iter_parts(part.message.body, path)


def section_range(body: BodyPart, path: tuple[int, ...], spec: str = "") -> tuple[int, int] | None:
    """Byte range of BODY[path.spec], spec one of "", "MIME", "HEADER", "TEXT" (RFC 3501 §6.4.5).

    HEADER and TEXT need path () (the message) or a message/rfc822 part; MIME needs a part.
    """
    spec = spec.upper()
    part = find_part(body, path)
    if part is None:
        return None
    if not path:
        if spec == "HEADER":
            return body.header_start, body.body_start
        if spec == "TEXT":
            return body.body_start, body.body_end
        return (body.header_start, body.body_end) if spec == "" else None
    if spec == "":
        return part.body_start, part.body_end
    if spec == "MIME":
        return part.header_start, part.body_start
    if part.message is None:
        return None
    inner = part.message.body
    if spec == "HEADER":
        return inner.header_start, inner.body_start
    if spec == "TEXT":
        return inner.body_start, inner.body_end
    return None


# --- search text and attachments ---------------------------------------------------------

def _filename(part: BodyPart, hint: str | None) -> str | None:
    hint = hint or part.param("charset")
    for params, key in ((part.disposition_params, "filename"), (part.params, "name")):
        if params:
            name = decoded_params(params, hint).get(key)
            if name:
                return name
    return None


def _attachment_size(raw: bytes, part: BodyPart) -> int:
    if part.encoding != "base64":
        return part.size
    start, end = part.body_start, part.body_end
    chars = part.size - raw.count(b"\n", start, end) - raw.count(b"\r", start, end)
    tail = raw[max(start, end - 8):end].rstrip(b"\r\n \t")
    pad = len(tail) - len(tail.rstrip(b"="))
    return max(0, (chars - pad) * 3 // 4)


class _Extractor:
    def __init__(self, raw: bytes, hint: str | None) -> None:
        self.raw = raw
        self.hint = hint
        self.chunks: list[str] = []
        self.room = MAX_TEXT_CHARS
        self.attachments: list[Attachment] = []

    def add(self, text: str | None) -> None:
        if text and self.room > 0:
            text = text[:self.room]
            self.chunks.append(text)
            self.room -= len(text) + 1

    def envelope(self, env: Envelope) -> None:
        self.add(env.subject_decoded)
        for addrs in (env.from_, env.to, env.cc):
            for a in addrs:
                self.add(" ".join(x for x in (a.name_decoded, a.addr_spec) if x))

    def body(self, body: BodyPart, prefix: tuple[int, ...], in_message: bool) -> None:
        if body.is_multipart and not body.parts:   # no boundary found: index the body as text
            self.add(self.part_text(body))
        elif body.is_multipart:
            self.children(body, prefix, in_message)
        else:
            self.leaf(body, prefix + (1,), in_message, True)   # RFC 3501 §6.4.5: part 1

    def children(self, part: BodyPart, path: tuple[int, ...], in_message: bool) -> None:
        skip: set[int] = set()
        if part.subtype == "alternative":   # RFC 2046 §5.1.4: one text, plain preferred
            texts = [k for k, c in enumerate(part.parts) if c.type == "text"]
            if len(texts) > 1:
                keep = next((k for k in texts if part.parts[k].subtype == "plain"), texts[-1])
                skip = set(texts) - {keep}
        for k, child in enumerate(part.parts):
            if child.is_multipart:
                self.body(child, path + (k + 1,), in_message)
            else:
                self.leaf(child, path + (k + 1,), in_message, k not in skip)

    def leaf(self, part: BodyPart, path: tuple[int, ...], in_message: bool, want_text: bool) -> None:
        if want_text and _is_text_body(part):
            self.add(self.part_text(part))
        name = _filename(part, self.hint)
        if part.message is not None:
            self.envelope(part.message.envelope)
            self.body(part.message.body, path, True)
            if not name:
                name = (part.message.envelope.subject_decoded.strip() or "message") + ".eml"
        self.add(name)
        if not in_message and (name or part.disposition == "attachment" or part.type != "text"):
            self.attachments.append(Attachment(path, name, part.content_type,
                                               _attachment_size(self.raw, part)))

    def part_text(self, part: BodyPart) -> str:
        limit = min(MAX_TEXT_PART_OCTETS, self.room * 8 + 1024)
        end = min(part.body_end, part.body_start + limit)
        data = decode_transfer(self.raw[part.body_start:end], part.encoding)
        charset = part.param("charset")
        if part.subtype == "html":
            charset = charset or html_charset(data)
        text = decode_text(data, charset, self.hint, final=end == part.body_end)
        return html_to_text(text) if part.subtype == "html" else text


def _is_text_body(part: BodyPart) -> bool:
    """Parts whose decoded content goes into the search text (HTML is stripped of markup)."""
    return part.type == "text" and part.subtype not in ("rtf", "richtext")


# --- entry points ------------------------------------------------------------------------

_CHARSET_PARAM = re.compile(rb'charset\s*=\s*"?([A-Za-z0-9_.:-]{1,40})', re.I)


def _charset_hint(raw: bytes, end: int = HINT_SCAN_OCTETS) -> str | None:
    """First declared charset that is not ASCII/UTF-8: how this sender's raw 8-bit headers are encoded.

    Reads raw[:end] (at most HINT_SCAN_OCTETS), as if the message ended there.
    """
    # What _CHARSET_PARAM.finditer(raw, 0, end) finds, tried only where "charset" starts: a
    # case-insensitive regex scans a 4 KiB message in 17 us, lower() and find() in about 1.
    end = min(end, HINT_SCAN_OCTETS, len(raw))
    low = raw[:end].lower()
    pos = low.find(b"charset")
    while pos >= 0:
        m = _CHARSET_PARAM.match(raw, pos, end)
        if m is None:
            pos = low.find(b"charset", pos + 1)
            continue
        codec = codec_for(m.group(1).decode("ascii"))
        if codec not in (None, "utf-8"):
            return codec
        pos = low.find(b"charset", m.end())
    return None


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse a raw message once; never raises on broken MIME (stores byte-for-byte, indexes what it can)."""
    return parse_with_head(raw)[0]


def parse_with_head(raw: bytes) -> tuple[ParsedMessage, list[str]]:
    """`parse_message` and `header_lines` of the top-level header (raw[:header_end]) from the same one scan."""
    raw = bytes(raw)
    try:
        return _parse_with_head(raw)
    except Exception:   # a bug here must not lose mail: fall back to a single opaque part
        log.exception("parse_message failed on a %d-octet message", len(raw))
        body = BodyPart("text", "plain", size=len(raw), lines=raw.count(b"\n"), body_end=len(raw))
        return ParsedMessage(len(raw), 0, Envelope(), body, (), "", ()), []


def _parse(raw: bytes) -> ParsedMessage:
    return _parse_with_head(raw)[0]


def _parse_with_head(raw: bytes) -> tuple[ParsedMessage, list[str]]:
    hint = _charset_hint(raw)
    builder = _TreeBuilder(raw, hint)
    body, values = builder.entity(0, len(raw), 0, ("text", "plain"))
    envelope = _envelope(values, hint)
    headers = tuple((f[0], decode_header_value(field_value(raw, f), hint))
                    for f in builder.top_fields if f[0] in SEARCH_HEADERS)
    extractor = _Extractor(raw, hint)   # the body only: SEARCH BODY must not see the header
    extractor.body(body, (), False)
    head = _lines(raw, builder.top_fields, _charset_hint(raw, body.body_start))  # as header_lines(raw[:header_end])
    return ParsedMessage(len(raw), body.body_start, envelope, body, headers,
                         "\n".join(extractor.chunks), tuple(extractor.attachments)), head


# --- JSON: positional lists, small and quick to load -------------------------------------

_JSON_VERSION = 1
_SURROGATE = re.compile("[\ud800-\udfff]")


def _addr_out(a: Address) -> list:
    out = [a.name, a.adl, a.mailbox, a.host]
    if a.name_decoded != a.name:
        out.append(a.name_decoded)
    return out


def _env_out(e: Envelope) -> list:
    addrs = lambda t: [_addr_out(a) for a in t]   # noqa: E731
    return [e.date, e.subject, addrs(e.from_),
            0 if e.sender == e.from_ else addrs(e.sender),
            0 if e.reply_to == e.from_ else addrs(e.reply_to),
            addrs(e.to), addrs(e.cc), addrs(e.bcc), e.in_reply_to, e.message_id,
            e.subject_decoded, e.date_parsed.isoformat() if e.date_parsed else None]


def _flat(pairs) -> list:
    return [x for pair in pairs for x in pair]


def _part_out(p: BodyPart) -> list:
    return [p.type, p.subtype, _flat(p.params), p.id, p.description, p.encoding, p.size,
            p.lines, p.md5, p.disposition, _flat(p.disposition_params), list(p.language),
            p.location, p.header_start, p.body_start, p.body_end,
            [_part_out(c) for c in p.parts],
            [_env_out(p.message.envelope), _part_out(p.message.body)] if p.message else None]


def _dumps(m: ParsedMessage, include_text: bool) -> str:
    doc = [_JSON_VERSION, m.size, m.header_end, _env_out(m.envelope), _part_out(m.body),
           _flat(m.headers_decoded), m.text if include_text else "",
           [[list(a.path), a.filename, a.content_type, a.size] for a in m.attachments]]
    s = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    # Raw 8-bit header bytes live as lone surrogates; escape them so the JSON encodes as UTF-8.
    return _SURROGATE.sub(lambda c: "\\u%04x" % ord(c.group()), s) if _SURROGATE.search(s) else s


def _addr_in(a: list) -> Address:
    return Address(a[0], a[1], a[2], a[3], a[4] if len(a) > 4 else a[0])


def _env_in(e: list) -> Envelope:
    from_ = tuple(map(_addr_in, e[2]))
    return Envelope(e[0], e[1], from_,
                    from_ if e[3] == 0 else tuple(map(_addr_in, e[3])),
                    from_ if e[4] == 0 else tuple(map(_addr_in, e[4])),
                    tuple(map(_addr_in, e[5])), tuple(map(_addr_in, e[6])),
                    tuple(map(_addr_in, e[7])), e[8], e[9], e[10],
                    datetime.fromisoformat(e[11]) if e[11] else None)


def _pairs(flat: list) -> tuple[tuple[str, str], ...]:
    return tuple(zip(flat[0::2], flat[1::2]))


def _part_in(p: list) -> BodyPart:
    return BodyPart(p[0], p[1], _pairs(p[2]), p[3], p[4], p[5], p[6], p[7], p[8], p[9],
                    _pairs(p[10]), tuple(p[11]), p[12], p[13], p[14], p[15],
                    tuple(map(_part_in, p[16])),
                    EmbeddedMessage(_env_in(p[17][0]), _part_in(p[17][1])) if p[17] else None)


@dataclass(frozen=True, slots=True)
class ParsedHead:
    """The top of a stored parse: what ENVELOPE, SEARCH and BODY[HEADER] need, without the part tree."""

    header_end: int
    envelope: Envelope
    headers_decoded: tuple[tuple[str, str], ...]


def head_from_json(data: str | bytes) -> ParsedHead:
    """Load only the envelope and headers of a stored parse (cheaper than ParsedMessage.from_json)."""
    doc = json.loads(data)
    if doc[0] != _JSON_VERSION:
        raise ValueError(f"unknown ParsedMessage JSON version {doc[0]!r}")
    return ParsedHead(doc[2], _env_in(doc[3]), _pairs(doc[5]))


def _loads(data: str | bytes) -> ParsedMessage:
    doc = json.loads(data)
    if doc[0] != _JSON_VERSION:
        raise ValueError(f"unknown ParsedMessage JSON version {doc[0]!r}")
    return ParsedMessage(doc[1], doc[2], _env_in(doc[3]), _part_in(doc[4]), _pairs(doc[5]), doc[6],
                         tuple(Attachment(tuple(a[0]), a[1], a[2], a[3]) for a in doc[7]))
