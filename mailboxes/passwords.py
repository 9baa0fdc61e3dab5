"""Password hashing for the directory: Argon2 off the event loop with bounded concurrency, and app-password formats.

Implementation notes
- Argon2 is deliberately slow (about 200 ms of CPU at argon2-cffi's default
  cost, RFC 9106's low-memory profile). It runs in a thread pool of its own
  (argon2-cffi releases the GIL), and an asyncio semaphore of the same size
  makes a login storm wait in the event loop, where a client that hangs up
  is simply cancelled, instead of piling work into the pool's queue.
- Every login attempt costs exactly one verification, whether the account
  exists or not: unknown and disabled accounts are verified against a dummy
  hash made once with the same parameters (`verify_dummy`), so the answer
  time does not tell who has an account.
- App passwords are made by us as `<id>-<secret>`: the id (not secret) names
  the row, so a login verifies one hash instead of trying every app password
  of the account. App passwords issued before (20 hex characters, no id) are
  still found by trying the account's app-password hashes after the main
  password failed; reissuing them gives one-hash logins.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["PasswordHashing", "format_app_password", "parse_app_password", "is_legacy_app_password",
           "new_app_secret"]

APP_SECRET_CHARS = 20  # lowercase hex: 80 random bits
_APP_PASSWORD = re.compile(r"([1-9][0-9]{0,17})-([0-9a-f]{%d})" % APP_SECRET_CHARS)
_LEGACY_APP_PASSWORD = re.compile(r"[0-9a-f]{%d}" % APP_SECRET_CHARS)

T = TypeVar("T")


def new_app_secret() -> str:
    return secrets.token_hex(APP_SECRET_CHARS // 2 + 1)[:APP_SECRET_CHARS]


def format_app_password(app_id: int, secret: str) -> str:
    return f"{app_id}-{secret}"


def parse_app_password(password: str) -> tuple[int, str] | None:
    """(row id, secret) when `password` has the shape of an app password we issue, else None."""
    m = _APP_PASSWORD.fullmatch(password)
    return (int(m.group(1)), m.group(2)) if m else None


def is_legacy_app_password(password: str) -> bool:
    """Whether `password` has the shape of an app password issued before they carried their id."""
    return _LEGACY_APP_PASSWORD.fullmatch(password) is not None


# OWASP's recommended floor for Argon2id; mailserver's [auth] argon2_* keys default to the same.
DEFAULT_COST = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}


def _cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers narrow), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class PasswordHashing:
    """Argon2 hashing and verification in a dedicated thread pool, at most `slots` at a time."""

    def __init__(self, hasher: PasswordHasher | None = None, *, slots: int | None = None) -> None:
        self.hasher = hasher or PasswordHasher(**DEFAULT_COST)
        self.slots = max(1, slots or _cores())
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="argon2")
        self._gate: asyncio.Semaphore | None = None  # made in the running loop on first use
        self._dummy: str | None = None

    async def _run(self, fn: Callable[..., T], *args) -> T:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.slots)
        async with self._gate:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def hash(self, password: str) -> str:
        return await self._run(self.hasher.hash, password)

    async def verify(self, hash_: str, password: str) -> bool:
        return await self._run(self._verify, hash_, password)

    def _verify(self, hash_: str, password: str) -> bool:
        try:
            return self.hasher.verify(hash_, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify_dummy(self, password: str) -> None:
        """Spend what verifying a real account's password costs, for an account that cannot log in."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_hex(16))
        await self.verify(self._dummy, password)

    def needs_rehash(self, hash_: str) -> bool:
        """Whether `hash_` was made with other parameters than the configured ones."""
        try:
            return self.hasher.check_needs_rehash(hash_)
        except (InvalidHashError, ValueError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
