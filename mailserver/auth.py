"""Logins for SMTP AUTH, IMAP and webmail: one Authenticator, throttled per client address and per account.

Implementation notes
- One attempt: refuse while the client or account is throttled; accept from
  the credential cache when the account still holds that credential (one read,
  no hashing); else share the answer of a check of the same credentials that
  is already running or queued; else reserve a slot in the throttle (waiting
  while the failures plus attempts in flight fill the limit), verify (one
  Argon2 hash in the directory's bounded pool), settle the slot. The slots
  and failures are rows in the directory database (mailserver/throttle.py),
  so every process and node sharing it counts the same guesses.
- So N parallel wrong passwords cost at most the failure limit in hashes, and
  the rest are refused once those fail; a storm of right passwords from one
  address (a NAT, an office) flows through the same slots without failing.
- Log lines carry client-controlled values through `logfield` only.
- Accounts with a second factor (mailboxes.secondfactor): mail clients (IMAP, SMTP) cannot
  type a code, so they must use an app password; the account's own password is refused
  there with a reply that says so (AppPasswordRequired), as the large providers do. The
  webmail accepts the password and then asks for the code (`second_factor`), whose
  guesses count in the same throttle under their own account key (a right password does
  not clear them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher

from mailboxes.attempts import LoginAttempts
from mailboxes.directory import Directory
from mailboxes.model import Account, Credential, Verified
from mailboxes.secondfactor import SecondFactors

from .config import Config
from .credcache import CredentialCache
from .logsafe import logfield
from .throttle import AuthThrottle

log = logging.getLogger("postroom.auth")


class AuthFailed(Exception):
    """Wrong credentials or a disabled account (never says which)."""


class AppPasswordRequired(AuthFailed):
    """The account's own password from a mail client while the account has a second factor."""


class AuthThrottled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; retry in {int(retry_after) + 1} s")
        self.retry_after = retry_after


def is_loopback(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def password_hasher(config: Config) -> PasswordHasher:
    """The Argon2id hasher with the configured cost ([auth] argon2_*)."""
    return PasswordHasher(time_cost=config.get("auth", "argon2_time_cost"),
                          memory_cost=config.get("auth", "argon2_memory_cost"),
                          parallelism=config.get("auth", "argon2_parallelism"))


MAIL_CLIENT_PROTOCOLS = frozenset({"imap", "smtp", "carddav"})  # they cannot ask for a second factor
SECOND_FACTOR_KEY = "2fa:"  # the throttle's account key for code guesses: "2fa:<address>"
ADMIT_POLL_S = 0.25  # a waiter for a slot looks again this often (a settle on another node wakes nobody here)
_NO_ANSWER = object()  # a shared check ended without an answer (its client left): check again


@dataclass
class Authenticator:
    directory: Directory
    throttle: AuthThrottle
    cache: CredentialCache
    _waiters: dict[tuple[str, str], deque[asyncio.Future]] = field(default_factory=dict, repr=False)
    _checks: dict[bytes, asyncio.Future] = field(default_factory=dict, repr=False)  # by cache key
    second_factors: SecondFactors | None = None  # default (made when first needed): the directory's database

    @property
    def factors(self) -> SecondFactors:
        if self.second_factors is None:
            self.second_factors = SecondFactors(self.directory.db)
        return self.second_factors

    @classmethod
    def create(cls, directory: Directory, *, max_failures: int = 5, window_s: int = 300,
               cache_ttl: float = 300.0, cache_size: int = 10_000,
               attempts: LoginAttempts | None = None) -> "Authenticator":
        """``attempts``: where the throttle keeps its rows (default: the directory's database)."""
        throttle = AuthThrottle(attempts or LoginAttempts(directory.db), max_failures=max_failures,
                                window_s=window_s)
        return cls(directory, throttle, CredentialCache(clock=time.monotonic, ttl_s=cache_ttl, max_entries=cache_size))

    @classmethod
    def from_config(cls, directory: Directory, config: Config) -> "Authenticator":
        return cls.create(directory, max_failures=config.get("limits", "auth_failures"),
                          window_s=config.get("limits", "auth_window"),
                          cache_ttl=config.get("auth", "credential_cache_ttl"),
                          cache_size=config.get("auth", "credential_cache_size"))

    async def login(self, username: str, password: str, *, ip: str | None, protocol: str,
                    app_passwords: bool = True) -> Account:
        """The account, or AuthThrottled / AuthFailed. Logs one line per attempt, never the password.

        ``app_passwords=False``: only the account's own password (to confirm a password change).
        """
        user = (username or "").strip().lower()
        try:
            got = await self._attempt(user, password or "", ip or "-")
        except AuthThrottled as exc:
            log.warning("auth throttled protocol=%s user=%s ip=%s retry_after=%.0f", protocol, logfield(user),
                        logfield(ip), exc.retry_after)
            await self.directory.audit_soon(user, "login.throttled", protocol, ip=ip or "")
            raise
        if got is None or (got[1] is not None and not app_passwords):
            log.warning("auth failed protocol=%s user=%s ip=%s", protocol, logfield(user), logfield(ip))
            await self.directory.audit_soon(user, "login.failed", protocol, ip=ip or "")
            raise AuthFailed("authentication failed")
        acct, app_id = got
        if app_id is None and protocol in MAIL_CLIENT_PROTOCOLS and await self.factors.enrolled(acct.id):
            log.warning("auth refused protocol=%s user=%s ip=%s: second factor on, app password required",
                        protocol, logfield(acct.address), logfield(ip))
            await self.directory.audit_soon(acct.address, "login.failed", protocol, ip=ip or "",
                                            reason="app password required")
            raise AppPasswordRequired("app password required")
        log.info("auth ok protocol=%s user=%s ip=%s", protocol, logfield(acct.address), logfield(ip))
        await self.directory.audit_soon(acct.address, "login.ok", protocol, ip=ip or "",
                                        app_password=app_id is not None)
        return acct

    async def second_factor(self, account: Account, code: str, *, ip: str | None) -> bool:
        """Whether `code` is the account's current TOTP code or an unused recovery code; AuthThrottled.

        Throttled like a password: a slot per guess, failures counted per client network and
        per account (under their own key).
        """
        where, key = ip or "-", SECOND_FACTOR_KEY + account.address
        seen = await self.throttle.verdict(where, key)
        if seen.wait is not None:
            await self.directory.audit_soon(account.address, "login.totp.throttled", "webmail", ip=ip or "")
            raise AuthThrottled(seen.wait)
        slot = await self._admit(where, key)  # waits while guesses in flight fill the limit
        ok: bool | None = None
        try:
            ok = await self.factors.verify(account.id, code)
        except asyncio.CancelledError:
            ok = False
            raise
        finally:
            await asyncio.shield(self._end(slot, where, key, ok))
        log.log(logging.INFO if ok else logging.WARNING, "second factor %s user=%s ip=%s",
                "ok" if ok else "failed", logfield(account.address), logfield(ip))
        await self.directory.audit_soon(account.address, "login.totp.ok" if ok else "login.totp.failed", "webmail",
                                        ip=ip or "")
        return ok

    async def _attempt(self, user: str, password: str, where: str) -> tuple[Account, int | None] | None:
        """(the account, the app password's id or None for its own password), or None."""
        while True:
            key = self.cache.key(user, password)
            cred = self.cache.get(key)
            # The throttle and a cached credential are read side by side (two reads, one wait);
            # a throttled client is refused even with the right password.
            seen, acct = await asyncio.gather(self.throttle.verdict(where, user),
                                              self._still_valid(cred))
            if seen.wait is not None:
                raise AuthThrottled(seen.wait)
            if cred is None and self.cache.get(key) is not None:
                continue  # a check of these credentials ended while we read: use its answer
            if cred is not None:
                if acct is not None:
                    if seen.account_failures:  # a write only when there is something to clear
                        await self.throttle.record_success(user)
                    return acct, cred.app_id
                self.cache.drop(key)  # changed password, disabled, removed or revoked
            running = self._checks.get(key)
            if running is None:
                return await self._check(key, user, password, where)
            # The same credentials are being checked (or wait for a slot): share that answer.
            answer = await asyncio.shield(running)
            if answer is _NO_ANSWER:
                continue
            if answer is None:
                await self.throttle.record_failure(where, user)
                self._wake(where, user)
                return None
            return answer.account, answer.credential.app_id  # its success already cleared the failures

    async def _still_valid(self, cred: Credential | None) -> Account | None:
        return None if cred is None else await self.directory.credential_account(cred)

    async def _check(self, key: bytes, user: str, password: str, where: str) -> tuple[Account, int | None] | None:
        done = asyncio.get_running_loop().create_future()
        self._checks[key] = done  # before waiting for a slot: the same credentials queue once
        answer: object = _NO_ANSWER  # what clients waiting on the same credentials get
        ok: bool | None = None  # None (an error): the slot is freed without counting
        slot: int | None = None
        try:
            slot = await self._admit(where, user)
            verified: Verified | None = None
            if user and password:
                verified = await self.directory.check_password(user, password)
            answer, ok = verified, verified is not None
            if verified is not None:  # before the check is let go of: a later login finds one or the other
                self.cache.put(key, verified.credential)
        except asyncio.CancelledError:
            ok = False  # counted as a failure: hanging up mid-check must not buy unlimited guesses
            raise
        finally:
            del self._checks[key]
            done.set_result(answer)
            if slot is not None:
                # Shielded: a client hanging up must not leave its slot counted as in flight.
                await asyncio.shield(self._end(slot, where, user, ok))
        return None if verified is None else (verified.account, verified.credential.app_id)

    async def _end(self, slot: int, where: str, user: str, ok: bool | None) -> None:
        try:
            await self.throttle.end(slot, user, ok=ok)
        finally:
            self._wake(where, user)

    # -- waiting for a slot -------------------------------------------------------

    async def _admit(self, where: str, user: str) -> int:
        """Reserve a slot in the throttle, waiting while failures and attempts in flight fill the limit.

        A settle in this process wakes one waiter; a settle on another node is
        noticed within ADMIT_POLL_S.
        """
        while True:
            slot = await self.throttle.begin(where, user)
            if slot is not None:
                return slot
            seen = await self.throttle.verdict(where, user)
            if seen.wait is not None:
                self._wake(where, user)  # pass the turn on: they are refused too
                raise AuthThrottled(seen.wait)
            if seen.busy is None:
                continue  # room appeared between the two statements
            woken = asyncio.get_running_loop().create_future()
            queue = self._waiters.setdefault(seen.busy, deque())
            queue.append(woken)
            try:
                async with asyncio.timeout(ADMIT_POLL_S):
                    await asyncio.shield(woken)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                if woken.done() and not woken.cancelled():
                    self._wake(where, user)  # pass the turn we were given on
                raise
            finally:
                if woken in queue:
                    queue.remove(woken)
                if not queue and self._waiters.get(seen.busy) is queue:
                    del self._waiters[seen.busy]

    def _wake(self, where: str, user: str) -> None:
        """After an attempt settled: wake the next waiter on each of its keys (it tries for the slot)."""
        for key in self.throttle.keys(where, user):
            queue = self._waiters.get(key)
            while queue:
                woken = queue.popleft()
                if not woken.done():
                    woken.set_result(None)
                    break
            if queue is not None and not queue:
                del self._waiters[key]
