"""Bearer tokens for the JSON API: created with their secret shown once, found by its SHA-256, listed and revoked.

Implementation notes
- The secret is 256 random bits (`secrets.token_bytes`) in unpadded URL-safe base64 behind a
  `pr_` prefix (so a leaked token is recognisable in logs and by secret scanners). The table
  keeps only SHA-256 of the raw bytes. A fast hash is right for these, unlike passwords: the
  secret is high-entropy, so a slow hash would add no protection against guessing, and every
  API request looks a token up.
- kind "admin": a person's token acting as its owner account (with that account's role);
  kind "source": a workflow system's token (`source_id`, no owner; mailboxes.events). `department_id` None means the
  whole server; otherwise the token is limited to that department.
- A revoked token is never found again; `find` records `last_used_at` (to LAST_USED_STEP).
- `find` remembers a live token for CACHE_SECONDS per open database (`_Live`, at most MAX_CACHED):
  every API request asks, and the read was the largest part of an event post (a hand-off to a
  reader thread, its BEGIN and COMMIT). A revocation through this process (`revoke`, a source's
  revocation) forgets them at once; one made by another process — the CLI, another worker, another
  node — takes effect there within CACHE_SECONDS. Unknown secrets are never remembered, so a new
  token works at once and a guess always reaches the database (and the refused-token throttle).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, select, update

from . import schema as t
from .db import Database
from .errors import InvalidInput, NotFound
from .websessions import TOKEN_BYTES, _aware, utcnow
from .websessions import token_hash as session_token_hash

TOKEN_PREFIX = "pr_"
MAX_TOKEN_CHARS = 64  # longer Authorization values are not looked up at all
MAX_LABEL = 128  # the column's width
KINDS = ("admin", "source")
LAST_USED_STEP = timedelta(seconds=60)  # `last_used_at` is written at most this often per token
CACHE_SECONDS = 2.0  # a live token is looked up again after this (another process's revocation takes this long)
MAX_CACHED = 10_000  # live tokens remembered per database at most (oldest forgotten first)


def _aware_or_none(d: datetime | None) -> datetime | None:
    return None if d is None else _aware(d)


def token_hash(token: str) -> bytes | None:
    """The stored form of a token, or None when `token` cannot be one (same encoding as a session secret)."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
        return None
    return session_token_hash(token[len(TOKEN_PREFIX):])


@dataclass(frozen=True)
class ApiToken:
    id: int
    kind: str
    owner_id: int | None
    department_id: int | None
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    source_id: int | None = None


_COLS = (t.api_tokens.c.id, t.api_tokens.c.kind, t.api_tokens.c.owner_id, t.api_tokens.c.department_id,
         t.api_tokens.c.label, t.api_tokens.c.created_at, t.api_tokens.c.last_used_at, t.api_tokens.c.revoked_at, t.api_tokens.c.source_id)
_FIND = select(*_COLS).where(t.api_tokens.c.token_hash == bindparam("h"))


def _token(r) -> ApiToken:
    return ApiToken(r.id, r.kind, r.owner_id, r.department_id, r.label, _aware(r.created_at),
                    _aware_or_none(r.last_used_at), _aware_or_none(r.revoked_at), r.source_id)


monotonic = time.monotonic  # the cache's clock (tests move it)
_MEMO = "apitokens.live"


class _Live:
    """Live tokens found lately, by hash: (token, monotonic time it was read)."""

    def __init__(self) -> None:
        self.found: dict[bytes, tuple[ApiToken, float]] = {}

    def get(self, h: bytes) -> ApiToken | None:
        hit = self.found.get(h)
        if hit is None:
            return None
        if monotonic() - hit[1] >= CACHE_SECONDS:
            del self.found[h]
            return None
        return hit[0]

    def put(self, h: bytes, tok: ApiToken, read_at: float) -> None:
        self.found.pop(h, None)
        self.found[h] = (tok, read_at)
        while len(self.found) > MAX_CACHED:
            del self.found[next(iter(self.found))]

    def refresh(self, h: bytes, tok: ApiToken) -> None:
        """A remembered token with newer fields (its last use), still as old as when it was read."""
        hit = self.found.get(h)
        if hit is not None:
            self.found[h] = (tok, hit[1])


def forget_live_tokens(db: Database) -> None:
    """After a revocation: this process looks every token up again."""
    db.memo.pop(_MEMO, None)


class ApiTokens:
    """The api_tokens table behind a small API; `clock` is passed in (tests move time)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def _live(self) -> _Live:
        live = self.db.memo.get(_MEMO)
        if live is None:
            live = self.db.memo[_MEMO] = _Live()
        return live  # type: ignore[return-value]

    async def create(self, owner_id: int | None, *, kind: str = "admin", department_id: int | None = None,
                     label: str = "", source_id: int | None = None) -> tuple[str, ApiToken]:
        """A new token: (the secret, shown once; the token). An admin token has an owner, a source token a source."""
        async with self.db.write() as conn:
            return await self.create_in(conn, owner_id, kind=kind, department_id=department_id, label=label,
                                        source_id=source_id)

    async def create_in(self, conn, owner_id: int | None, *, kind: str = "admin", department_id: int | None = None,
                        label: str = "", source_id: int | None = None) -> tuple[str, ApiToken]:
        """`create` within the caller's write transaction `conn` (a source's checks and its token commit together)."""
        if kind not in KINDS:
            raise InvalidInput(f"token kind must be one of {', '.join(KINDS)}")
        if (kind == "source") != (source_id is not None) or (kind == "admin") != (owner_id is not None):
            raise InvalidInput("an admin token needs an owner account, a source token a source")
        if len(label) > MAX_LABEL:
            raise InvalidInput(f"token label longer than {MAX_LABEL} characters")
        raw = secrets.token_bytes(TOKEN_BYTES)
        secret = TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        now = self.clock()
        res = await conn.execute(insert(t.api_tokens).values(
            token_hash=hashlib.sha256(raw).digest(), kind=kind, owner_id=owner_id,
            department_id=department_id, label=label, created_at=now, source_id=source_id))
        tid = res.inserted_primary_key[0]
        return secret, ApiToken(tid, kind, owner_id, department_id, label, now, None, None, source_id)

    async def find(self, secret: str) -> ApiToken | None:
        """The live token with this secret (recording its use now), or None (unknown, malformed, revoked)."""
        h = token_hash(secret)
        if h is None:
            return None
        live = self._live()
        tok = live.get(h)
        if tok is None:
            read_at = monotonic()
            # read_sync: on SQLite one hand-off to a reader's thread, not five. The statement is
            # built once: building it (and its cache key) per request was a third of an event post's CPU.
            r = await self.db.read_sync(lambda conn: conn.execute(_FIND, {"h": h}).first())
            if r is None or r.revoked_at is not None:
                return None
            tok = _token(r)
            if self.db.memo.get(_MEMO) is live:  # not when a revocation came while we read
                live.put(h, tok, read_at)
        now = self.clock()
        if tok.last_used_at is not None and now - tok.last_used_at < LAST_USED_STEP:
            return tok  # a busy source posts many times a second: one write per step, not per request
        async with self.db.write() as conn:
            await conn.execute(update(t.api_tokens).where(t.api_tokens.c.id == tok.id).values(last_used_at=now))
        tok = replace(tok, last_used_at=now)
        live.refresh(h, tok)  # a revocation meanwhile replaced `live`: refreshing the old one changes nothing
        return tok

    async def list(self, *, owner_id: int | None = None, source_id: int | None = None) -> list[ApiToken]:
        c = t.api_tokens.c
        q = select(*_COLS).order_by(c.id)
        if owner_id is not None:
            q = q.where(c.owner_id == owner_id)
        if source_id is not None:
            q = q.where(c.source_id == source_id)
        async with self.db.read() as conn:
            return [_token(r) for r in (await conn.execute(q)).all()]

    async def revoke(self, token_id: int) -> ApiToken:
        """Revoke a token (idempotent); NotFound when there is no such token."""
        c = t.api_tokens.c
        async with self.db.write() as conn:
            await conn.execute(update(t.api_tokens).where(c.id == token_id, c.revoked_at.is_(None))
                               .values(revoked_at=self.clock()))
            r = (await conn.execute(select(*_COLS).where(c.id == token_id))).first()
        forget_live_tokens(self.db)
        if r is None:
            raise NotFound(f"no API token {token_id}")
        return _token(r)
