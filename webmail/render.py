"""What the reading view shows of a stored message: its text and HTML parts decoded, HTML sanitised by nh3, attachment names for download.

Implementation notes
- Nothing is parsed again: the parts are found in the stored body structure
  (mailboxes.mime, parse once) and sliced out of the raw message by their offsets.
- The HTML part is cleaned by nh3 (Rust's ammonia: an allow-list of tags, attributes
  and URL schemes; script, style and event handlers removed), and is then shown only
  inside a sandboxed frame (no scripts, opaque origin) under its own CSP that blocks
  every load except data: images, and remote images once the reader allows them. The
  sanitiser and the frame each stop script on their own.
- Download names follow RFC 6266 §4.3: an ASCII `filename` fallback and the real
  name as `filename*` in UTF-8 (RFC 8187), so Chinese names arrive intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import nh3

from mailboxes.charsets import decode_text, decode_transfer, html_charset, html_to_text
from mailboxes.mime import BodyPart, ParsedMessage, find_part, iter_parts

MAX_RENDER_OCTETS = 4 << 20  # encoded octets of one text or HTML part shown at most

# Presentational attributes old HTML mail relies on; no event handlers, no style sheets.
_EXTRA_ATTRIBUTES = {
    "*": {"style", "class", "dir", "lang", "title", "align", "valign", "width", "height", "bgcolor"},
    "table": {"border", "cellpadding", "cellspacing", "summary"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap", "scope"},
    "font": {"color", "face", "size"},
    "a": {"href", "name"},
    "img": {"src", "alt"},
}
ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) | {"font"}
ALLOWED_ATTRIBUTES = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
for _tag, _attrs in _EXTRA_ATTRIBUTES.items():
    ALLOWED_ATTRIBUTES.setdefault(_tag, set()).update(_attrs)
URL_SCHEMES = {"http", "https", "mailto"}


@dataclass(frozen=True)
class Content:
    html: str | None  # sanitised
    text: str | None


def sanitise_html(markup: str) -> str:
    return nh3.clean(markup, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer", set_tag_attribute_values={"a": {"target": "_blank"}},
                     strip_comments=True)


def _is_attachment(part: BodyPart) -> bool:
    return part.disposition == "attachment" or part.filename is not None


def _decoded(raw: bytes, part: BodyPart) -> str:
    end = min(part.body_end, part.body_start + MAX_RENDER_OCTETS)
    data = decode_transfer(raw[part.body_start:end], part.encoding)
    charset = part.param("charset")
    if part.subtype == "html":
        charset = charset or html_charset(data)
    return decode_text(data, charset, final=end == part.body_end)


def content(raw: bytes, parsed: ParsedMessage) -> Content:
    """The first HTML and the first plain-text body part (not attachments, not inside an attached message)."""
    html = text = None
    inside: list[tuple[int, ...]] = []  # paths of attached messages: their parts are not this body
    for path, part in iter_parts(parsed.body):
        if any(path[:len(p)] == p for p in inside):
            continue
        if part.message is not None:
            inside.append(path)
            continue
        if part.type != "text" or _is_attachment(part):
            continue
        if part.subtype == "html" and html is None:
            html = sanitise_html(_decoded(raw, part))
        elif part.subtype == "plain" and text is None:
            text = _decoded(raw, part)
    return Content(html, text)


def content_spans(parsed: ParsedMessage) -> list[tuple[int, int]]:
    """The byte ranges `content` may read: every text part's body, cut where `_decoded` cuts it."""
    return [(p.body_start, min(p.body_end, p.body_start + MAX_RENDER_OCTETS))
            for _, p in iter_parts(parsed.body) if p.type == "text" and not p.is_multipart]


def part_spans(parsed: ParsedMessage, path: tuple[int, ...]) -> list[tuple[int, int]]:
    """The byte range `part_bytes` reads (none when there is no such single part)."""
    part = find_part(parsed.body, path)
    return [] if part is None or part.is_multipart else [(part.body_start, part.body_end)]


def html_text(markup: str) -> str:
    """The text of an HTML body, for quoting it in a reply."""
    return html_to_text(markup)


def part_bytes(raw: bytes, parsed: ParsedMessage, path: tuple[int, ...]) -> tuple[BodyPart, bytes] | None:
    part = find_part(parsed.body, path)
    if part is None or part.is_multipart:
        return None
    return part, decode_transfer(raw[part.body_start:part.body_end], part.encoding)


def parse_path(value: str) -> tuple[int, ...] | None:
    """An IMAP part path such as "1.2" (RFC 3501 §6.4.5), bounded; None when malformed."""
    if not value or len(value) > 64:
        return None
    bits = value.split(".")
    if not all(b.isdigit() and len(b) <= 5 for b in bits):
        return None
    path = tuple(int(b) for b in bits)
    return path if all(n > 0 for n in path) else None


def content_disposition(filename: str | None, fallback: str = "attachment") -> str:
    """RFC 6266 §4.1/§4.3: `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`."""
    name = (filename or fallback).replace("\r", " ").replace("\n", " ").strip() or fallback
    name = name.replace("/", "_").replace("\\", "_")
    ascii_name = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"%' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def frame_document(body_html: str) -> str:
    """The document inside the sandboxed frame (its CSP header does the blocking)."""
    return ("<!doctype html><html><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>"
            f"<body>{body_html}</body></html>")
