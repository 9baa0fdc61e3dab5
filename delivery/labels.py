"""Classification labels: which label a message carries and whether it may go to a destination (issue 13)."""

from __future__ import annotations

import quopri
import re
from dataclasses import dataclass

from mailboxes.charsets import decode_header_value
from mailboxes.headers import field_value, scan_header, without_fields
from mailboxes.mime import parse_message

HEADER = "X-Postroom-Classification"  # the label's name (zh), signed by DKIM (delivery/dkim.py SIGNED_HEADERS)
ORGANISATION, PARTNERS, ANYONE = "organisation", "partners", "anyone"
REACHES = (ORGANISATION, PARTNERS, ANYONE)
MAX_LABELS = 32  # a configured list longer than this is refused
MAX_SUBJECT_SCAN = 998  # characters of the decoded subject a tag is looked for in (RFC 5322 §2.1.1's line)

DEFAULT_LABELS = [
    {"zh": "公开", "en": "public", "tag": "[公开]", "reach": ANYONE},
    {"zh": "内部", "en": "internal", "tag": "[内部]", "reach": PARTNERS},
    {"zh": "敏感", "en": "sensitive", "tag": "[敏感]", "reach": ORGANISATION},
]

# A subject tag in square brackets is also recognised in the brackets Chinese mail clients and
# input methods type: 【内部】 (U+3010/U+3011) and the fullwidth ［内部］ (U+FF3B/U+FF3D).
TAG_BRACKETS = (("[", "]"), ("【", "】"), ("［", "］"))

_HEADER_LINE = re.compile(rb"(?im)^" + HEADER.encode() + rb"[ \t]*:[ \t]*([^\r\n]{0,200})")


@dataclass(frozen=True)
class Label:
    zh: str
    en: str
    tag: str  # the subject tag, e.g. "[内部]"; "" for none
    reach: str  # organisation | partners | anyone


def check_labels(value: list) -> str | None:
    """Why this `[labels] list` value is unusable, or None (mailserver.config calls this)."""
    if not value or len(value) > MAX_LABELS:
        return f"must list 1 to {MAX_LABELS} labels"
    names = set()
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("zh"), str) or not isinstance(item.get("en"), str):
            return "each label is a table with zh and en names"
        if item.get("reach") not in REACHES:
            return f"label {item.get('zh')!r}: reach must be one of {', '.join(REACHES)}"
        if set(item) - {"zh", "en", "tag", "reach"}:
            return f"label {item['zh']!r}: unknown field"
        for n in (item["zh"].lower(), item["en"].lower()):
            if not n or n in names:
                return f"label {item['zh']!r}: names must be unique and not empty"
            names.add(n)
    return None


class Labels:
    """The configured ordered list (least to most restricted) and its default."""

    def __init__(self, items: list[dict] | None = None, default: str = "") -> None:
        self.labels = tuple(Label(i["zh"], i["en"], i.get("tag", ""), i["reach"]) for i in (items or DEFAULT_LABELS))
        self.default = self.find(default) if default else self.labels[min(1, len(self.labels) - 1)]
        if self.default is None:
            raise ValueError(f"default label {default!r} is not in the list")
        self._tags = tuple((lb, tag_forms(lb.tag)) for lb in self.labels if lb.tag)
        self._markers = {lb: markers(lb) for lb in self.labels}
        self._text_markers = {lb: text_markers(lb) for lb in self.labels}

    def find(self, name: str) -> Label | None:
        n = name.strip().lower()
        return next((lb for lb in self.labels if n in (lb.zh.lower(), lb.en.lower())), None)

    def of(self, data: bytes, default: Label | None = None) -> Label:
        """The label a submitted message carries: the one it asks for, raised to the most restricted label
        of the labelled mail it forwards or quotes (see `carried`): material keeps its label when passed on."""
        asked = self.asked(data, default)
        carried = self.carried(data)
        return carried if carried is not None and self.rank(carried) > self.rank(asked) else asked

    def asked(self, data: bytes, default: Label | None = None) -> Label:
        """The label a submitted message asks for: the header, else a subject tag, else the default."""
        head = _head(data)
        m = _HEADER_LINE.search(head)
        if m:
            found = self.find(m.group(1).decode("utf-8", "replace"))
            if found is not None:
                return found
        subject = subject_of(head)
        if subject:
            for lb, forms in self._tags:
                if any(f in subject for f in forms):
                    return lb
        return default or self.default

    def rank(self, label: Label) -> int:
        """Its place in the list, least restricted first."""
        return self.labels.index(label)

    def carried(self, data: bytes) -> Label | None:
        """The most restricted label of labelled mail inside this message's body, or None.

        Labelled mail leaves with our header (stamped) and, in a plain-text body, the banner; a forward
        as an attachment (message/rfc822, never base64: RFC 2046 §5.2.1) keeps the header, an inline
        forward or a reply quoting it keeps the banner (as written, "> "-quoted, or quoted-printable).
        First plain substring searches over the raw body (linear, no regex on client input). When they
        find nothing and the body is not one plain UTF-8 text written as is, the body's text as the
        search index reads it (mailboxes.mime: each text part's transfer encoding and charset decoded,
        HTML made text, at most MAX_TEXT_CHARS): clients that send a reply base64-encoded, in GBK or as
        HTML (Foxmail, Outlook) hide the quoted banner from the first search. The sender's own header
        or tag still counts (`asked`).
        """
        head = _head(data)
        body = data[len(head):]
        for label in reversed(self.labels[1:]):  # the most restricted first; the least can raise nothing
            if any(marker in body for marker in self._markers[label]):
                return label
        if _written_as_read(head):
            return None  # the raw search saw the text as a client shows it
        text = parse_message(data).text + "\n"  # the last line ends too
        for label in reversed(self.labels[1:]):
            if any(marker in text for marker in self._text_markers[label]):
                return label
        return None

    def allows(self, label: Label, domain: str, *, local: frozenset[str], partners: frozenset[str]) -> bool:
        """May mail with this label go to this recipient domain without approval?"""
        d = domain.rstrip(".").lower()
        if label.reach == ANYONE or d in local:
            return True
        return label.reach == PARTNERS and d in partners


def markers(label: Label) -> tuple[bytes, ...]:
    """What labelled mail leaves inside a message that forwards or quotes it (Labels.carried)."""
    line = banner(label).encode("utf-8")
    return (f"\n{HEADER}: {label.zh}\r".encode("utf-8"), line, quopri.encodestring(line).strip(),
            f"[{label.en.upper()}]\r".encode("ascii", "replace"))


def text_markers(label: Label) -> tuple[str, ...]:
    """What labelled mail leaves in the decoded text of a message that quotes it: the banner, or its ASCII
    form ending a line."""
    ascii_banner = f"[{label.en.upper()}]"
    return (banner(label), ascii_banner + "\n", ascii_banner + "\r")


def tag_forms(tag: str) -> tuple[str, ...]:
    """The spellings of a subject tag: as configured and, when bracketed, in each of TAG_BRACKETS."""
    for open_, close in TAG_BRACKETS:
        if len(tag) > 2 and tag.startswith(open_) and tag.endswith(close):
            inner = tag[1:-1]
            return tuple(dict.fromkeys([tag] + [o + inner + c for o, c in TAG_BRACKETS]))
    return (tag,)


def subject_of(head: bytes) -> str:
    """The Subject as a mail client means it: unfolded (RFC 5322 §2.2.3), RFC 2047 words decoded; bounded."""
    fields, _ = scan_header(head, 0, len(head))
    found = next((f for f in fields if f[0] == "subject"), None)
    if found is None:
        return ""
    return decode_header_value(field_value(head, found)[:MAX_SUBJECT_SCAN * 4])[:MAX_SUBJECT_SCAN]


def _head(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n", 0, 64 * 1024)
    return data[: end + 2] if end >= 0 else data[: 64 * 1024]


def stamped(data: bytes, label: Label) -> bytes:
    """The message with exactly one label header, ours (any other spelling removed), and its banner.

    The banner is a first line of a text/plain body; other bodies (multipart,
    HTML) keep their MIME structure untouched and carry the header only.
    """
    clean = without_fields(data, lambda name, _field: name == HEADER.lower())
    out = f"{HEADER}: {label.zh}\r\n".encode("utf-8") + clean
    return _with_banner(out, label)


_CONTENT_TYPE = re.compile(rb"(?im)^content-type[ \t]*:[ \t]*([^;\r\n]*)")
_CTE = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:[ \t]*([^;\r\n ]*)")


_CHARSET = re.compile(rb'(?i)charset[ \t]*=[ \t]*"?([A-Za-z0-9_.:-]{1,40})')


def _written_as_read(head: bytes) -> bool:
    """One text/plain body, not transfer-encoded, in UTF-8 or ASCII (nothing else in the header says
    otherwise): its raw octets are its text. Anything unclear answers False (then the text is decoded)."""
    ct, cte = _CONTENT_TYPE.search(head), _CTE.search(head)
    if ct is not None and ct.group(1).strip().lower() != b"text/plain":
        return False
    if cte is not None and cte.group(1).strip().lower() not in (b"7bit", b"8bit"):
        return False
    return all(m.group(1).lower() in (b"utf-8", b"utf8", b"us-ascii") for m in _CHARSET.finditer(head))


def banner(label: Label) -> str:
    return f"【{label.zh} {label.en.upper()}】"


def _with_banner(data: bytes, label: Label) -> bytes:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data
    head = data[: end + 4]
    ct = _CONTENT_TYPE.search(head)
    cte = _CTE.search(head)
    plain = ct is None or ct.group(1).strip().lower() == b"text/plain"
    identity = cte is None or cte.group(1).strip().lower() in (b"7bit", b"8bit")
    if not plain or not identity:
        return data
    line = banner(label)
    if not line.isascii() and (ct is None or b"utf-8" not in head.lower()):
        line = f"[{label.en.upper()}]"  # no UTF-8 declared: US-ASCII (RFC 2045 §5.2)
    return head + line.encode("utf-8") + b"\r\n\r\n" + data[end + 4:]
