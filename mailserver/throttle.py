"""Sliding-window throttle of failed logins, keyed by client network and by account, shared by SMTP and IMAP.

Implementation notes
- The counts live in the directory database (mailboxes.attempts), so every
  worker process and every node sharing it throttles one set of guesses:
  five wrong passwords spread over three nodes block like five on one. Each
  call is one statement; `verdict` is the pure decision over the rows read.
- `check` answers "how long must this client wait" (None = go ahead); each
  protocol maps that to its own reply (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE]).
- A key is blocked while it has `limit` failures inside the last `window_s`
  seconds; it may be retried when the oldest of its newest `limit` failures
  leaves the window.
- IPv6 clients are keyed by their /64 (one host usually owns a whole /64);
  IPv4-mapped IPv6 addresses count as the IPv4 address.
- A success clears the account's failures, never the network's: otherwise
  one valid login would reset the counter for guessing at other accounts.
- Account locking is a denial-of-service lever, so the account limit may be
  set higher than the per-network limit (`max_account_failures`).
- Attempts in flight count too: a password check takes a while (Argon2), and
  checking the limit only before it let 30 parallel guesses through a limit
  of 5. `begin` reserves a slot (a row) before the check, only while the
  failures plus attempts in flight leave room, and `end` settles it as a
  success, a failure or neither; the caller waits while there is no room.
- Rows are pruned at most every PRUNE_EVERY_S by each process, so the table
  holds about a window's worth of failures and the attempts in flight.
- Time is the wall clock (shared by processes and nodes), passed in.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailboxes.attempts import Attempt, LoginAttempts

__all__ = ["AuthThrottle", "Verdict", "verdict"]

Key = tuple[str, str]
FLIGHT_S = 120.0  # an attempt in flight older than this belonged to a process that died (a check takes < 1 s)
PRUNE_EVERY_S = 60.0
ROWS_PER_LIMIT = 4  # rows read per check: enough for both limits with attempts in flight beside them


@dataclass(frozen=True)
class Verdict:
    """What the rows say about one attempt's keys."""

    wait: float | None  # seconds until allowed; None: not blocked
    busy: Key | None  # a key with no room for one more attempt in flight (when not blocked)
    account_failures: int  # failures of the named account inside the window


def verdict(rows: list[Attempt], keys: list[Key], limits: dict[str, int], window_s: float, now: float) -> Verdict:
    """Decide from the rows that count against `keys` (the newest first)."""
    wait = 0.0
    busy: Key | None = None
    account_failures = 0
    for kind, value in keys:
        mine = [r for r in rows if (r.ip_key if kind == "ip" else r.account_key) == value]
        failures = [r.at for r in mine if r.failed]  # newest first
        limit = limits[kind]
        if kind == "account":
            account_failures = len(failures)
        if len(failures) >= limit:
            wait = max(wait, failures[limit - 1] + window_s - now)
        elif busy is None and len(mine) >= limit:
            busy = (kind, value)
    if wait > 0:
        return Verdict(wait, None, account_failures)
    return Verdict(None, busy, account_failures)


class AuthThrottle:
    """Count failed logins per client network and per account over a sliding window, in the database."""

    def __init__(
        self,
        attempts: LoginAttempts,
        *,
        clock: Callable[[], float] = time.time,
        max_failures: int = 5,
        window_s: float = 300.0,
        max_account_failures: int | None = None,
        ipv6_prefix: int = 64,
    ) -> None:
        if max_failures < 1 or (max_account_failures is not None and max_account_failures < 1):
            raise ValueError("failure limits must be at least 1")
        if window_s <= 0 or not 0 <= ipv6_prefix <= 128:
            raise ValueError("bad throttle limits")
        self.attempts = attempts
        self._clock = clock
        self._limits = {"ip": max_failures, "account": max_account_failures or max_failures}
        self._window = float(window_s)
        self._ipv6_prefix = ipv6_prefix
        self._pruned = 0.0

    # -- keys ---------------------------------------------------------------

    def _ip_key(self, ip: str) -> str:
        try:
            addr = ipaddress.ip_address(ip.strip().split("%", 1)[0])
        except ValueError:
            return ip.strip().lower()[:64]
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is not None:
                return str(addr.ipv4_mapped)
            return str(ipaddress.IPv6Network((addr, self._ipv6_prefix), strict=False))
        return str(addr)

    @staticmethod
    def _account_key(account: str | None) -> str | None:
        return account.strip().lower()[:320] if account and account.strip() else None

    def keys(self, ip: str, account: str | None) -> list[Key]:
        """The keys one attempt counts against: the client's network and, when named, the account."""
        keys = [("ip", self._ip_key(ip))]
        acct = self._account_key(account)
        if acct is not None:
            keys.append(("account", acct))
        return keys

    def _horizons(self, now: float) -> dict[str, float]:
        return {"failed_since": now - self._window, "flight_since": now - FLIGHT_S}

    # -- API ----------------------------------------------------------------

    async def verdict(self, ip: str, account: str | None = None) -> Verdict:
        """One read: blocked (and for how long), busy, and the account's failures."""
        now = self._clock()
        rows = await self.attempts.recent(self._ip_key(ip), self._account_key(account), **self._horizons(now),
                                          cap=ROWS_PER_LIMIT * sum(self._limits.values()))
        return verdict(rows, self.keys(ip, account), self._limits, self._window, now)

    async def check(self, ip: str, account: str | None = None) -> float | None:
        """Seconds until a login attempt is allowed, or None if it is allowed now."""
        return (await self.verdict(ip, account)).wait

    async def begin(self, ip: str, account: str | None = None) -> int | None:
        """Count one attempt in flight if there is room; its id for `end`, or None."""
        now = self._clock()
        return await self.attempts.begin(self._ip_key(ip), self._account_key(account), now, **self._horizons(now),
                                         ip_limit=self._limits["ip"], account_limit=self._limits["account"])

    async def end(self, attempt_id: int, account: str | None, *, ok: bool | None) -> None:
        """Settle an attempt `begin` counted: a success, a failure, or None (no answer: not counted)."""
        now = self._clock()
        await self.attempts.settle(attempt_id, ok=ok, account_key=self._account_key(account), now=now)
        if now - self._pruned >= PRUNE_EVERY_S:
            self._pruned = now
            await self.attempts.prune(**self._horizons(now))

    async def record_failure(self, ip: str, account: str | None = None) -> None:
        """Count one failed login from `ip`, for `account` when the client named one."""
        await self.attempts.fail(self._ip_key(ip), self._account_key(account), self._clock())

    async def record_success(self, account: str | None) -> None:
        """Forget the account's failures (the network's stay; see the module notes)."""
        acct = self._account_key(account)
        if acct is not None:
            await self.attempts.clear_account(acct)
