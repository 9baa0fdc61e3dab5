"""The compose upload spool: attachments streamed to disk per account before the mail is sent, by id, expiring.

Implementation notes
- One directory per account under the spool root (`<data_dir>/webmail-uploads/<account id>/`);
  an entry is `<id>.data` (the bytes) and `<id>.json` (name, type, size, when). An id names
  an entry only inside its own account's directory, so another account's id is simply not found.
- Ids are random (secrets.token_urlsafe) and checked against a fixed pattern before they
  touch a path: nothing a client sends becomes a path component except through that check.
- A file is written as it arrives (`<id>.part`, renamed when complete) and never held whole
  in memory; past `max_file_bytes` the part is removed and UploadTooLarge raised.
- Entries expire `ttl` after they were made (the clock is passed in, so tests move it);
  expired ones are treated as missing and removed by `sweep()`, which the webmail runs on
  uploads and from a background task.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

log = logging.getLogger("postroom.webmail.uploads")

MAX_FILE_BYTES = 25 << 20  # one uploaded attachment
MAX_COMPOSE_BYTES = 25 << 20  # all spooled attachments of one message together
MAX_ACCOUNT_BYTES = 2 * MAX_COMPOSE_BYTES  # everything one account has in the spool at once
MAX_ACCOUNT_ENTRIES = 50  # files one account has in the spool at once
MAX_IN_FLIGHT = 3  # uploads of one account being received at once (static/uploads.js sends two at a time)
MAX_NAME_CHARS = 255  # of a file name as kept (RFC 2231 encodes it when sent)
TTL = timedelta(hours=24)  # an upload not sent or saved in a draft by then is removed
SWEEP_EVERY = timedelta(minutes=10)
_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16)


class UploadError(Exception):
    """An upload the spool refuses; `key` names the message for the user."""

    key = "upload_failed"


class UploadTooLarge(UploadError):
    key = "upload_too_large"


class SpoolFull(UploadError):
    key = "upload_spool_full"


@dataclass(frozen=True)
class Spooled:
    """One entry: what the browser said about the file, its size and where its bytes are."""

    id: str
    filename: str
    content_type: str
    size: int
    created: datetime
    path: Path


class UploadSpool:
    """Per-account upload files on disk; every method takes the account id, every lookup is inside it."""

    def __init__(self, root: Path, *, clock: Callable[[], datetime], ttl: timedelta = TTL,
                 max_file_bytes: int = MAX_FILE_BYTES, max_compose_bytes: int = MAX_COMPOSE_BYTES,
                 max_account_bytes: int = MAX_ACCOUNT_BYTES, max_account_entries: int = MAX_ACCOUNT_ENTRIES) -> None:
        self.root = root
        self.clock = clock
        self.ttl = ttl
        self.max_file_bytes = max_file_bytes
        self.max_compose_bytes = max_compose_bytes
        self.max_account_bytes = max_account_bytes
        self.max_account_entries = max_account_entries
        self.last_sweep: datetime | None = None
        self.in_flight: Counter[int] = Counter()

    def _dir(self, account_id: int) -> Path:
        return self.root / str(int(account_id))

    async def store(self, account_id: int, filename: str, content_type: str,
                    chunks: AsyncIterator[bytes]) -> Spooled:
        """Write `chunks` to a new entry; UploadTooLarge (nothing left behind) past the per-file limit."""
        entries = self.entries(account_id)
        if len(entries) >= self.max_account_entries or self.in_flight[account_id] >= MAX_IN_FLIGHT:
            raise SpoolFull()
        room = min(self.max_file_bytes, self.max_account_bytes - sum(e.size for e in entries))
        if room <= 0:
            raise SpoolFull()
        d = self._dir(account_id)
        d.mkdir(parents=True, exist_ok=True)
        uid = secrets.token_urlsafe(16)
        part = d / f"{uid}.part"
        size = 0
        self.in_flight[account_id] += 1
        try:
            with open(part, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > room:
                        raise UploadTooLarge() if room == self.max_file_bytes else SpoolFull()
                    out.write(chunk)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            self.in_flight[account_id] -= 1
            if not self.in_flight[account_id]:
                del self.in_flight[account_id]
        now = self.clock()
        meta = {"filename": _clean_name(filename), "content_type": _clean_type(content_type), "size": size,
                "created": now.isoformat()}
        part.rename(d / f"{uid}.data")
        (d / f"{uid}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        return Spooled(uid, meta["filename"], meta["content_type"], size, now, d / f"{uid}.data")

    def get(self, account_id: int, uid: str) -> Spooled | None:
        """The account's entry `uid`, or None (unknown, malformed, another account's, or expired)."""
        if not isinstance(uid, str) or not _ID.fullmatch(uid):
            return None
        d = self._dir(account_id)
        try:
            meta = json.loads((d / f"{uid}.json").read_text(encoding="utf-8"))
            created = datetime.fromisoformat(meta["created"])
            entry = Spooled(uid, str(meta["filename"]), str(meta["content_type"]), int(meta["size"]), created,
                            d / f"{uid}.data")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if self.clock() - created >= self.ttl or not entry.path.exists():
            self.remove(account_id, uid)
            return None
        return entry

    def entries(self, account_id: int) -> list[Spooled]:
        d = self._dir(account_id)
        if not d.is_dir():
            return []
        found = (self.get(account_id, p.stem) for p in d.glob("*.json"))
        return [e for e in found if e is not None]

    def remove(self, account_id: int, uid: str) -> bool:
        if not isinstance(uid, str) or not _ID.fullmatch(uid):
            return False
        d = self._dir(account_id)
        gone = False
        for suffix in (".data", ".json"):
            try:
                (d / f"{uid}{suffix}").unlink()
                gone = True
            except FileNotFoundError:
                pass
        return gone

    def sweep(self) -> int:
        """Remove expired entries (and leftover parts older than the TTL) of every account; how many went."""
        now = self.clock()
        self.last_sweep = now
        removed = 0
        if not self.root.is_dir():
            return 0
        for d in self.root.iterdir():
            if not d.is_dir() or not d.name.isdigit():
                continue
            for p in list(d.iterdir()):
                if p.suffix == ".json":
                    if self.get(int(d.name), p.stem) is None:
                        removed += 1
                elif p.suffix in (".part", ".data") and not (d / f"{p.stem}.json").exists():
                    try:  # a stalled part or an orphan, by the file's own time
                        if now.timestamp() - p.stat().st_mtime >= self.ttl.total_seconds():
                            p.unlink()
                            removed += 1
                    except FileNotFoundError:  # gone with its entry meanwhile
                        pass
            try:
                d.rmdir()  # only when empty
            except OSError:
                pass
        return removed

    def due(self) -> bool:
        return self.last_sweep is None or self.clock() - self.last_sweep >= SWEEP_EVERY

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _clean_name(name: str) -> str:
    """The file name as shown and sent: the last path component, no control characters, bounded."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f").strip()
    return name[:MAX_NAME_CHARS] or "attachment"


def _clean_type(ctype: str) -> str:
    ctype = (ctype or "").split(";", 1)[0].strip().lower()
    ok = re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}", ctype)
    return ctype if ok else "application/octet-stream"


def spool_root(data_dir: Path) -> Path:
    return Path(os.fspath(data_dir)) / "webmail-uploads"
