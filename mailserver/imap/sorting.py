"""SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO) as pure functions over small per-message records.

Implementation notes
- What a message contributes is read once from its stored parse (``facts_of``): decoded
  subject, Date:, the first From/To/Cc address, Message-ID, In-Reply-To, References. The
  record is kept beside the rendered ENVELOPE in the RenderCache; no body is read.
- Strings compare with the i;ascii-casemap collation (RFC 5256 §2 "Internationalization
  Considerations"): a-z fold to A-Z, everything else by code point (= UTF-8 octet order).
- One stable sort pass per criterion, last criterion first, starting from sequence order:
  O(k n log n) for k criteria, and the implicit final key is the sequence number, which
  REVERSE does not touch (RFC 5256 §3 REVERSE).
- Base-subject extraction (§2.1) is a left-to-right scan over indexes: every step moves an
  end inward, a failed subj-refwd test after a chain of subj-blobs is remembered so the
  chain is not rescanned, and the subject is cut at MAX_SUBJECT_CHARS first. No regular
  expression here can backtrack more than linearly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

MAX_SUBJECT_CHARS = 1024  # characters of a subject that SORT / THREAD look at
MAX_REFERENCES = 100  # message IDs taken from the end of a References field (THREAD=REFERENCES)

SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",  # RFC 5256 §3
                       "DISPLAYFROM", "DISPLAYTO"})  # RFC 5957 §4

_CASEMAP = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}
_SPACES = re.compile(r"[ \t\r\n]+")
_BLOB = re.compile(r"\[[^\[\]]*\] *")  # subj-blob (WSP is only SP after step 1)
_BLOBS = re.compile(r"(?:\[[^\[\]]*\] *)*")
_REFWD = re.compile(r"(?:re|fwd?) *(?:\[[^\[\]]*\] *)?:", re.I)  # subj-refwd
_MSGID = re.compile(r"<([^<>@\s]+@[^<>\s]+)>")  # RFC 5322 §3.6.4 msg-id, spaces not allowed


def casemap(text: str) -> str:
    """The i;ascii-casemap comparison form (RFC 4790 §9.2): ASCII letters upper-cased, nothing else."""
    return text.upper() if text.isascii() else text.translate(_CASEMAP)


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1: (base subject, whether a reply/forward marker was removed) of a decoded subject."""
    s = _SPACES.sub(" ", subject[:MAX_SUBJECT_CHARS])  # (1) tabs, line breaks and runs of WSP -> SP
    start, end = 0, len(s)
    marked = False
    while True:
        while end > start:  # (2) subj-trailer: "(fwd)" / WSP, repeatedly
            if s[end - 1] == " ":
                end -= 1
            elif end - start >= 5 and s[end - 5:end].lower() == "(fwd)":
                end -= 5
                marked = True
            else:
                break
        dead = -1  # a blob chain ending here is not followed by subj-refwd
        while start < end:  # (3)-(5)
            if s[start] == " ":  # subj-leader WSP
                start += 1
                continue
            if start > dead:  # subj-leader = *subj-blob subj-refwd
                chain = _BLOBS.match(s, start, end).end()  # type: ignore[union-attr]
                m = _REFWD.match(s, chain, end)
                if m is not None:
                    start, marked = m.end(), True
                    continue
                dead = chain
            m = _BLOB.match(s, start, end)  # (4) a subj-blob, unless it is all that is left
            if m is not None and m.end() < end:
                start = m.end()
                continue
            break
        # (6) subj-fwd-hdr "[fwd:" ... subj-fwd-trl "]": unwrap and repeat from (2)
        if end - start >= 6 and s[start:start + 5].lower() == "[fwd:" and s[end - 1] == "]":
            start, end, marked = start + 5, end - 1, True
            continue
        return s[start:end], marked


class MessageFacts:
    """What SORT and THREAD read from one message's stored parse; the base subject is worked out once, on demand."""

    __slots__ = ("_base", "cc", "display_from", "display_to", "from_", "in_reply_to", "message_id",
                 "references", "sent", "subject", "to")

    def __init__(self, subject: str = "", sent: datetime | None = None, from_: str = "", to: str = "", cc: str = "",
                 display_from: str = "", display_to: str = "", message_id: str = "", in_reply_to: str = "",
                 references: str = "") -> None:
        self.subject, self.sent = subject, sent
        self.from_, self.to, self.cc = from_, to, cc  # addr-mailbox of the first address (RFC 5256 §3)
        self.display_from, self.display_to = display_from, display_to  # RFC 5957 §3 sort value
        self.message_id, self.in_reply_to, self.references = message_id, in_reply_to, references
        self._base: tuple[str, str, bool] | None = None

    def _subject(self) -> tuple[str, str, bool]:
        if self._base is None:
            base, marked = base_subject(self.subject)
            self._base = (base, casemap(base), marked)
        return self._base

    @property
    def base_subject(self) -> str:
        return self._subject()[0]

    @property
    def subject_key(self) -> str:
        """The base subject in comparison form (i;ascii-casemap)."""
        return self._subject()[1]

    @property
    def is_reply(self) -> bool:
        """RFC 5256 §2.1: extraction removed a reply or forward marker (THREAD=REFERENCES step 5)."""
        return self._subject()[2]

    def own_id(self) -> str | None:
        m = _MSGID.search(self.message_id)
        return m.group(1) if m else None

    def reference_ids(self) -> list[str]:
        """RFC 5256 §2.2 (REFERENCES): the References IDs, else the first valid In-Reply-To ID."""
        refs = [m.group(1) for m in _MSGID.finditer(self.references)]
        if refs:
            return refs[-MAX_REFERENCES:]
        m = _MSGID.search(self.in_reply_to)
        return [m.group(1)] if m else []

    def cost(self) -> int:
        return 120 + sum(len(x) for x in (self.subject, self.from_, self.to, self.cc, self.display_from,
                                          self.display_to, self.message_id, self.in_reply_to, self.references))


def _first(addresses: Iterable) -> object | None:
    """The first address that is not a group marker (RFC 3501 §7.4.2 group syntax)."""
    return next((a for a in addresses if a.host is not None), None)


def _display(a) -> str:
    """RFC 5957 §3: the decoded display name, else mailbox@host, else mailbox, else ""."""
    if a is None:
        return ""
    name = (a.name_decoded or a.name or "").strip()
    if name:
        return name
    if a.mailbox is not None and a.host is not None:
        return f"{a.mailbox}@{a.host}"
    return a.mailbox or ""


def facts_of(envelope, headers: Sequence[tuple[str, str]]) -> MessageFacts:
    """The sort and thread facts of a stored parse (mime.Envelope and its decoded header fields)."""
    first: dict[str, str] = {}
    for name, value in headers:
        if name in ("message-id", "in-reply-to", "references") and name not in first:
            first[name] = value
    f, t, c = _first(envelope.from_), _first(envelope.to), _first(envelope.cc)
    return MessageFacts(
        subject=envelope.subject_decoded or "", sent=envelope.date_parsed,
        from_=(f.mailbox or "") if f else "", to=(t.mailbox or "") if t else "", cc=(c.mailbox or "") if c else "",
        display_from=_display(f), display_to=_display(t), message_id=first.get("message-id", ""),
        in_reply_to=first.get("in-reply-to", ""), references=first.get("references", ""))


EMPTY_FACTS = MessageFacts()


@dataclass(frozen=True, slots=True)
class SortRecord:
    """One message as SORT and THREAD see it; ``seq`` is its message sequence number."""

    seq: int
    arrival: float  # INTERNALDATE, POSIX seconds
    size: int
    facts: MessageFacts

    @property
    def sent(self) -> float:
        """RFC 5256 §2.2: the Date: header in UTC, or the internal date when there is none that parses."""
        sent = self.facts.sent
        return sent.timestamp() if sent is not None else self.arrival


_KEYS: dict[str, Callable[[SortRecord], object]] = {
    "ARRIVAL": lambda r: r.arrival,
    "CC": lambda r: casemap(r.facts.cc),
    "DATE": lambda r: r.sent,
    "FROM": lambda r: casemap(r.facts.from_),
    "SIZE": lambda r: r.size,
    "SUBJECT": lambda r: r.facts.subject_key,
    "TO": lambda r: casemap(r.facts.to),
    "DISPLAYFROM": lambda r: casemap(r.facts.display_from),
    "DISPLAYTO": lambda r: casemap(r.facts.display_to),
}


def sort_order(records: Sequence[SortRecord], criteria: Sequence[tuple[str, bool]]) -> list[int]:
    """Positions of ``records`` (given in sequence order) in SORT order; ``criteria`` is (key, reverse) pairs."""
    order = list(range(len(records)))
    for name, reverse in reversed(criteria):
        key = _KEYS[name]
        values = [key(r) for r in records]
        order.sort(key=values.__getitem__, reverse=reverse)  # stable, also when reversed
    return order
