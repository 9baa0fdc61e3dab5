"""Queue priority of a message: 特急 (flash) and 加急 (immediate) documents overtake routine mail on every route.

Implementation notes (the decision, issue 12 point 4)
- Three levels, smaller first: FLASH 0 (特急), IMMEDIATE 1 (加急), ROUTINE 2. They equal
  bridges.manifest.Document.priority, so the document dispatch passes the manifest's 紧急程度 as
  it is (`Submission.priority`): the manifest is the only source of 特急.
- Headers count only for mail our own users or services submit (a login, the webmail, a bridge):
  `Priority: urgent` (RFC 2156 §5.3.6) or `X-Priority: 1`/`2` (the de-facto "highest"/"high")
  raise a message to IMMEDIATE, never to FLASH. Mail relayed from outside, DSNs and
  auto-replies are ROUTINE whatever they say: a stranger must not jump the queue.
- Only the top-level header is read (mailboxes.headers.scan_header, bounded like every header scan).
"""

from __future__ import annotations

from mailboxes.headers import MAX_HEADER_BLOCK, field_value, scan_header

FLASH, IMMEDIATE, ROUTINE = 0, 1, 2
LEVELS = (FLASH, IMMEDIATE, ROUTINE)
NAMES = {FLASH: "特急", IMMEDIATE: "加急", ROUTINE: "routine"}
TRUSTED_ORIGINS = frozenset({"submission", "webmail", "bridge"})  # Submission.origin values that may ask


def from_headers(data: bytes) -> int:
    """IMMEDIATE when the top-level header asks for urgency, else ROUTINE."""
    window = data[:MAX_HEADER_BLOCK]
    fields, _ = scan_header(window, 0, len(window))
    for name, *_ in fields:
        if name not in ("priority", "x-priority"):
            continue
        value = field_value(window, [name, *_]).strip().lower()
        if name == "priority" and value == "urgent":
            return IMMEDIATE
        if name == "x-priority" and value[:1] in ("1", "2"):
            return IMMEDIATE
    return ROUTINE


def of_submission(data: bytes, origin: str, asked: int | None) -> int:
    """The queue priority of a message given to `submit()`: what our caller asked for, else its header, else ROUTINE."""
    if origin not in TRUSTED_ORIGINS:
        return ROUTINE
    if asked is not None:
        return asked if asked in LEVELS else ROUTINE
    return from_headers(data)
