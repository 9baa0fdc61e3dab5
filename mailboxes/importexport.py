"""Import from mbox (mboxrd) and Maildir, export to mbox: byte-exact round trips, streamed.

Line endings: mbox and Maildir files are Unix text, so messages in them end
lines with LF. IMAP serves CRLF (RFC 3501 §2.1 and RFC822.SIZE must match
what is sent), so a message whose lines all end in bare LF is stored with
CRLF, and export turns CRLF back into LF. A message that already has CRLF, or
mixed endings, is stored as it is. Hence mbox → import → export gives back
the same bytes for every message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from .model import Flag

_FROM_LINE = re.compile(rb"^From \S*")
_QUOTED_FROM = re.compile(rb"^>+From ", re.M)
_NEEDS_QUOTE = re.compile(rb"^(>*From )", re.M)
MAX_MESSAGE = 256 * 1024 * 1024  # a larger "message" is a broken mbox


@dataclass(frozen=True)
class SourceMessage:
    raw: bytes  # as it will be stored (CRLF)
    flags: int
    internal_date: datetime | None
    size_in_file: int  # bytes consumed from the source (for progress)


def lf_to_crlf(data: bytes) -> bytes:
    if b"\r" in data:
        return data  # already CRLF (or mixed): keep byte for byte
    return data.replace(b"\n", b"\r\n")


def crlf_to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _from_line_date(line: bytes) -> datetime | None:
    # "From sender@example Mon Nov  2 10:00:00 2026"
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 3:
        return None
    try:
        d = datetime.strptime(" ".join(parts[2].split()), "%a %b %d %H:%M:%S %Y")
        return d.replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _status_flags(raw: bytes) -> int:
    """Flags from the Status/X-Status headers mutt and Thunderbird write into mbox files."""
    head = raw.split(b"\n\n", 1)[0]
    flags = 0
    for line in head.split(b"\n"):
        low = line.lower()
        if low.startswith(b"status:"):
            v = line[7:]
            if b"R" in v:
                flags |= Flag.SEEN
        elif low.startswith(b"x-status:"):
            v = line[9:]
            if b"A" in v:
                flags |= Flag.ANSWERED
            if b"F" in v:
                flags |= Flag.FLAGGED
            if b"D" in v:
                flags |= Flag.DELETED
            if b"T" in v:
                flags |= Flag.DRAFT
    return flags


def read_mbox(path: str | os.PathLike) -> Iterator[SourceMessage]:
    """Messages of an mboxrd/mboxo file, unquoting ">From " lines (mboxrd)."""
    with open(path, "rb") as f:
        cur: list[bytes] = []
        from_line: bytes | None = None
        consumed = 0
        prev_blank = True

        def flush() -> SourceMessage | None:
            if from_line is None:
                return None
            body = b"".join(cur)
            # The separator is the blank line before the next From_ line.
            if body.endswith(b"\n\n"):
                body = body[:-1]
            elif body.endswith(b"\r\n\r\n"):
                body = body[:-2]
            body = _QUOTED_FROM.sub(lambda m: m.group()[1:], body)
            return SourceMessage(lf_to_crlf(body), _status_flags(body), _from_line_date(from_line), consumed)

        for line in f:
            if _FROM_LINE.match(line) and prev_blank:
                msg = flush()
                if msg is not None:
                    yield msg
                cur, from_line, consumed = [], line, len(line)
                prev_blank = False
                continue
            if from_line is None:
                if line.strip():
                    raise ValueError(f"{path}: not an mbox file (no 'From ' line at the start)")
                continue
            cur.append(line)
            consumed += len(line)
            if consumed > MAX_MESSAGE:
                raise ValueError(f"{path}: a message is larger than {MAX_MESSAGE} bytes; is this an mbox file?")
            prev_blank = line in (b"\n", b"\r\n")
        msg = flush()
        if msg is not None:
            yield msg


_MAILDIR_FLAGS = {"S": Flag.SEEN, "R": Flag.ANSWERED, "F": Flag.FLAGGED, "T": Flag.DELETED, "D": Flag.DRAFT}


def read_maildir(path: str | os.PathLike) -> Iterator[SourceMessage]:
    root = Path(path)
    if not (root / "cur").is_dir() and not (root / "new").is_dir():
        raise ValueError(f"{root}: not a Maildir (no cur/ or new/)")
    files = []
    for sub in ("cur", "new"):
        d = root / sub
        if d.is_dir():
            files.extend(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    files.sort(key=lambda p: (p.stat().st_mtime, p.name))
    for p in files:
        flags = 0
        if ":2," in p.name:
            for ch in p.name.rsplit(":2,", 1)[1]:
                flags |= _MAILDIR_FLAGS.get(ch, 0)
        data = p.read_bytes()
        yield SourceMessage(lf_to_crlf(data), flags,
                            datetime.fromtimestamp(p.stat().st_mtime, timezone.utc), len(data))


def source_size(kind: str, path: str | os.PathLike) -> int:
    if kind == "mbox":
        return os.path.getsize(path)
    total = 0
    for sub in ("cur", "new"):
        d = Path(path) / sub
        if d.is_dir():
            total += sum(p.stat().st_size for p in d.iterdir() if p.is_file())
    return total


def mbox_entry(raw: bytes, sender: str, when: datetime) -> bytes:
    """One mboxrd entry: From_ line, body with >From quoting, LF endings, blank separator."""
    body = crlf_to_lf(raw) if b"\r\n" in raw and raw.count(b"\r\n") == raw.count(b"\n") else raw
    body = _NEEDS_QUOTE.sub(lambda m: b">" + m.group(1), body)
    if not body.endswith(b"\n"):
        body += b"\n"
    stamp = when.astimezone(timezone.utc).strftime("%a %b %d %H:%M:%S %Y")
    return b"From " + sender.encode("ascii", "replace") + b" " + stamp.encode() + b"\n" + body + b"\n"


def envelope_sender(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line.lower().startswith(b"return-path:"):
            v = line[12:].strip().strip(b"<>").decode("ascii", "replace")
            return v or "MAILER-DAEMON"
    return "MAILER-DAEMON"


def sent_date(raw: bytes) -> datetime | None:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line.lower().startswith(b"date:"):
            try:
                d = parsedate_to_datetime(line[5:].decode("latin-1").strip())
                return d if d.tzinfo else d.replace(tzinfo=timezone.utc)
            except (TypeError, ValueError, IndexError):
                return None
    return None


ProgressFn = Callable[[int], None]
