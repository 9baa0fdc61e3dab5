"""Webmail sign-in sessions in the central database: created at sign-in, found by their secret, ended on sign-out.

Implementation notes
- The secret is 256 random bits (`secrets.token_bytes`), handed to the browser once in
  URL-safe base64; the table keeps only its SHA-256, so reading the table (a backup, a
  replica) signs nobody in. Lookup is by that hash (unique index), one read per request.
- A session ends at `expires_at`, which `touch` moves forward (idle timeout) but never past
  `created_at + max_age` (absolute lifetime); the caller names both. Expired rows are not
  found and are removed by `purge_expired`.
- Every node reads the same rows, so a sign-out (or "sign out everywhere") on one node ends
  the session on all of them at the next request.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, insert, select, update

from . import schema as t
from .db import Database

TOKEN_BYTES = 32  # 256 bits of secret per session
MAX_TOKEN_CHARS = 64  # longer cookie values are not looked up at all
MAX_USER_AGENT = 255  # the column's width


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo is not None else d.replace(tzinfo=timezone.utc)  # SQLite returns naive UTC


def token_hash(token: str) -> bytes | None:
    """The stored form of a session secret, or None when `token` cannot be one."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != TOKEN_BYTES:
        return None
    # Only the canonical spelling: the last character carries spare bits, and another value of them
    # would decode to the same secret (a second spelling of one token; tests caught it 1 time in 16).
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    return hashlib.sha256(raw).digest()


@dataclass(frozen=True)
class WebSession:
    id: int
    account_id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str


class WebSessions:
    """The web_sessions table behind a small API; `clock` is passed in (tests move time)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def create(self, account_id: int, *, lifetime: timedelta, user_agent: str = "") -> tuple[str, WebSession]:
        """A new session for the account: (the secret for the cookie, the session)."""
        raw = secrets.token_bytes(TOKEN_BYTES)
        token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        now = self.clock()
        ua = (user_agent or "")[:MAX_USER_AGENT]
        async with self.db.write() as conn:
            res = await conn.execute(insert(t.web_sessions).values(
                token_hash=hashlib.sha256(raw).digest(), account_id=account_id, created_at=now,
                last_seen_at=now, expires_at=now + lifetime, user_agent=ua))
            sid = res.inserted_primary_key[0]
        return token, WebSession(sid, account_id, now, now, now + lifetime, ua)

    async def find(self, token: str) -> WebSession | None:
        """The live session with this secret, or None (unknown, malformed or expired)."""
        h = token_hash(token)
        if h is None:
            return None
        c = t.web_sessions.c
        async with self.db.read() as conn:
            r = (await conn.execute(select(c.id, c.account_id, c.created_at, c.last_seen_at, c.expires_at,
                                           c.user_agent).where(c.token_hash == h))).first()
        if r is None or _aware(r.expires_at) <= self.clock():
            return None
        return WebSession(r.id, r.account_id, _aware(r.created_at), _aware(r.last_seen_at), _aware(r.expires_at),
                          r.user_agent)

    async def touch(self, session: WebSession, *, idle: timedelta, max_age: timedelta) -> WebSession:
        """Record activity now and move the expiry to now + idle, capped at created + max_age."""
        now = self.clock()
        expires = min(now + idle, session.created_at + max_age)
        async with self.db.write() as conn:
            await conn.execute(update(t.web_sessions).where(t.web_sessions.c.id == session.id)
                               .values(last_seen_at=now, expires_at=expires))
        return WebSession(session.id, session.account_id, session.created_at, now, expires, session.user_agent)

    async def end(self, session_id: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(t.web_sessions).where(t.web_sessions.c.id == session_id))

    async def end_all(self, account_id: int) -> int:
        """Sign the account out everywhere; returns how many sessions ended."""
        async with self.db.write() as conn:
            res = await conn.execute(delete(t.web_sessions).where(t.web_sessions.c.account_id == account_id))
        return res.rowcount or 0

    async def of_account(self, account_id: int) -> list[WebSession]:
        c = t.web_sessions.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(c.id, c.account_id, c.created_at, c.last_seen_at, c.expires_at,
                                              c.user_agent).where(and_(c.account_id == account_id,
                                                                       c.expires_at > self.clock()))
                                       .order_by(c.id))).all()
        return [WebSession(r.id, r.account_id, _aware(r.created_at), _aware(r.last_seen_at), _aware(r.expires_at),
                           r.user_agent) for r in rows]

    async def purge_expired(self) -> int:
        async with self.db.write() as conn:
            res = await conn.execute(delete(t.web_sessions).where(t.web_sessions.c.expires_at <= self.clock()))
        return res.rowcount or 0
