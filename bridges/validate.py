"""Checks a posted workflow event field by field (pure: JSON in, a typed event or the field that is wrong out).

Every limit is a named constant here; a wrong field raises `FieldError(field, detail)`, which
the API turns into an RFC 9457 problem naming the field (bridges.api). Strings are checked with
str methods and bounded character classes only (no backtracking on client input).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

MAX_ID = 128  # the source's event id and the workflow item id (the columns' width)
MAX_TYPE = 64
MAX_TITLE = 200  # characters; it becomes the Subject
MAX_BODY = 32 * 1024  # characters of the body text
MAX_DATA_BYTES = 16 * 1024  # the `data` object, as JSON
MAX_DATA_DEPTH = 8
MAX_LINK = 2000
MAX_RECIPIENTS = 1000  # entries (addresses, group addresses, department codes) per event
MAX_RECIPIENT = 320  # characters per entry (RFC 5321 §4.5.3.1 path limit)
URGENCIES = ("normal", "urgent")
LOCALES = ("zh", "en")
FIELDS = frozenset({"id", "type", "item", "recipients", "title", "body", "data", "link", "urgency", "locale"})
_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class FieldError(ValueError):
    """The posted event is wrong in `field` (a JSON path such as "title" or "events[3].recipients")."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class PostedEvent:
    id: str
    type: str
    item: str
    recipients: tuple[str, ...]
    title: str
    body: str
    data: dict | None
    link: str
    urgency: str
    locale: str
    fingerprint: bytes  # SHA-256 of the event as posted (canonical JSON): a reused id with other content differs

    def payload(self) -> dict:
        """What is stored beside the row's columns."""
        return {"title": self.title, "body": self.body, "data": self.data, "link": self.link,
                "recipients": list(self.recipients)}


def _printable(s: str) -> bool:
    return s.isprintable()


def _string(obj: dict, name: str, *, required: bool, max_len: int, default: str = "") -> str:
    v = obj.get(name)
    if v is None:
        if required:
            raise FieldError(name, "is required")
        return default
    if not isinstance(v, str):
        raise FieldError(name, "must be a string")
    if required and not v.strip():
        raise FieldError(name, "must not be empty")
    if len(v) > max_len:
        raise FieldError(name, f"longer than {max_len} characters")
    return v


def _token(obj: dict, name: str, *, required: bool, default: str = "") -> str:
    """An id: printable ASCII without spaces."""
    v = _string(obj, name, required=required, max_len=MAX_ID, default=default)
    if v and not (v.isascii() and v.isprintable() and " " not in v):
        raise FieldError(name, "must be printable ASCII without spaces")
    return v


def _depth(v, level: int = 0) -> int:
    if level > MAX_DATA_DEPTH:
        return level
    if isinstance(v, dict):
        return max((_depth(x, level + 1) for x in v.values()), default=level + 1)
    if isinstance(v, list):
        return max((_depth(x, level + 1) for x in v), default=level + 1)
    return level


def event_type(v: object, field: str) -> str:
    """An event type: it names templates (bridges/templates), so a safe file-name part."""
    type_ = _string({field: v}, field, required=True, max_len=MAX_TYPE)
    if not set(type_) <= _TYPE_CHARS or not type_[0].isalnum():
        raise FieldError(field, "lower-case letters, digits, '_' and '-', starting with a letter or digit")
    return type_


def event(obj: object) -> PostedEvent:
    """The event in `obj` (a parsed JSON value), or FieldError naming the first wrong field."""
    if not isinstance(obj, dict):
        raise FieldError("", "an event is a JSON object")
    extra = sorted(k for k in obj if k not in FIELDS)
    if extra:
        raise FieldError(str(extra[0])[:64], "unknown field")
    ext_id = _token(obj, "id", required=True)
    type_ = event_type(obj.get("type"), "type")
    item = _token(obj, "item", required=False, default=ext_id) or ext_id
    rcpts = obj.get("recipients")
    if not isinstance(rcpts, list) or not rcpts:
        raise FieldError("recipients", "must be a non-empty list of addresses, group addresses or department codes")
    if len(rcpts) > MAX_RECIPIENTS:
        raise FieldError("recipients", f"more than {MAX_RECIPIENTS} entries")
    for i, r in enumerate(rcpts):
        if not isinstance(r, str) or not r.strip() or len(r) > MAX_RECIPIENT or not _printable(r):
            raise FieldError(f"recipients[{i}]", f"must be an address or a department code of at most "
                                                 f"{MAX_RECIPIENT} printable characters")
    title = _string(obj, "title", required=True, max_len=MAX_TITLE)
    if not _printable(title):
        raise FieldError("title", "must be one line of printable characters")
    body = _string(obj, "body", required=False, max_len=MAX_BODY)
    if "\x00" in body:
        raise FieldError("body", "must not contain NUL")
    data = obj.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise FieldError("data", "must be a JSON object")
        if _depth(data) > MAX_DATA_DEPTH:
            raise FieldError("data", f"nested deeper than {MAX_DATA_DEPTH}")
        if len(json.dumps(data, ensure_ascii=False).encode("utf-8")) > MAX_DATA_BYTES:
            raise FieldError("data", f"larger than {MAX_DATA_BYTES} bytes as JSON")
    if not body.strip() and not data:
        raise FieldError("body", "an event needs a body or data")
    link = _string(obj, "link", required=False, max_len=MAX_LINK)
    if link and not (link.startswith(("https://", "http://")) and link.isascii() and link.isprintable()
                     and " " not in link and len(link) > len("https://")):
        raise FieldError("link", "must be an http or https URL of printable ASCII")
    urgency = obj.get("urgency", "normal")
    if urgency not in URGENCIES:
        raise FieldError("urgency", f"must be one of {', '.join(URGENCIES)}")
    locale = obj.get("locale", "zh")
    if locale not in LOCALES:
        raise FieldError("locale", f"must be one of {', '.join(LOCALES)}")
    canon = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return PostedEvent(ext_id, type_, item, tuple(r.strip() for r in rcpts), title, body, data, link,
                       urgency, locale, hashlib.sha256(canon).digest())
