"""Sliding-window throttle of failed logins, keyed by client network and by account, shared by SMTP and IMAP.

Implementation notes
- Pure: the clock is passed in; nothing here sleeps, logs or reads the time itself.
- `check` answers "how long must this client wait" (None = go ahead); each
  protocol maps that to its own reply (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE]).
- A key is blocked while it has `limit` failures inside the last `window_s`
  seconds. Only the newest `limit` timestamps of a key are kept, which is all
  that decision needs.
- Memory is bounded: keys whose newest failure left the window are dropped,
  and at most `max_keys` keys are tracked (the least recently failing key is
  evicted first). An attacker with very many addresses can push other keys
  out; the per-account limit still holds for the account they attack.
- IPv6 clients are keyed by their /64 (one host usually owns a whole /64);
  IPv4-mapped IPv6 addresses count as the IPv4 address.
- A success clears the account's failures, never the network's: otherwise
  one valid login would reset the counter for guessing at other accounts.
- Account locking is a denial-of-service lever, so the account limit may be
  set higher than the per-network limit (`max_account_failures`).
- Attempts in flight count too: a password check takes a while (Argon2), and
  checking the limit only before it let 30 parallel guesses through a limit
  of 5. `begin` reserves a slot before the check and `end` settles it as a
  success or a failure; `busy_key` names a key whose failures plus attempts
  in flight already reach its limit, so a further attempt must wait for one
  to settle (the caller does the waiting; `room` says how many may go on).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["AuthThrottle"]

_Key = tuple[str, str]


class AuthThrottle:
    """Count failed logins per client network and per account over a sliding window."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        max_failures: int = 5,
        window_s: float = 300.0,
        max_account_failures: int | None = None,
        max_keys: int = 10_000,
        ipv6_prefix: int = 64,
    ) -> None:
        if max_failures < 1 or (max_account_failures is not None and max_account_failures < 1):
            raise ValueError("failure limits must be at least 1")
        if window_s <= 0 or max_keys < 2 or not 0 <= ipv6_prefix <= 128:
            raise ValueError("bad throttle limits")
        self._clock = clock
        self._limits = {"ip": max_failures, "account": max_account_failures or max_failures}
        self._window = float(window_s)
        self._max_keys = max_keys
        self._ipv6_prefix = ipv6_prefix
        # Ordered by the time of each key's newest failure, oldest first.
        self._entries: OrderedDict[_Key, deque[float]] = OrderedDict()
        self._in_flight: dict[_Key, int] = {}  # attempts begun and not yet ended; bounded by open sessions

    def __len__(self) -> int:
        return len(self._entries)

    # -- keys ---------------------------------------------------------------

    def _ip_key(self, ip: str) -> _Key:
        try:
            addr = ipaddress.ip_address(ip.strip().split("%", 1)[0])
        except ValueError:
            return ("ip", ip.strip().lower())
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is not None:
                return ("ip", str(addr.ipv4_mapped))
            net = ipaddress.IPv6Network((addr, self._ipv6_prefix), strict=False)
            return ("ip", str(net))
        return ("ip", str(addr))

    def keys(self, ip: str, account: str | None) -> list[_Key]:
        """The keys one attempt counts against: the client's network and, when named, the account."""
        return self._keys(ip, account)

    def _keys(self, ip: str, account: str | None) -> list[_Key]:
        keys = [self._ip_key(ip)]
        if account and account.strip():
            keys.append(("account", account.strip().lower()))
        return keys

    # -- housekeeping -------------------------------------------------------

    def _expire(self, now: float) -> None:
        horizon = now - self._window
        while self._entries:
            key, stamps = next(iter(self._entries.items()))
            if stamps and stamps[-1] > horizon:
                break
            del self._entries[key]

    def _recent(self, key: _Key, now: float) -> deque[float] | None:
        stamps = self._entries.get(key)
        if stamps is None:
            return None
        horizon = now - self._window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        return stamps

    # -- API ----------------------------------------------------------------

    def record_failure(self, ip: str, account: str | None = None) -> None:
        """Count one failed login from `ip`, for `account` when the client named one."""
        now = self._clock()
        self._expire(now)
        for key in self._keys(ip, account):
            stamps = self._entries.get(key)
            if stamps is None:
                stamps = self._entries[key] = deque(maxlen=self._limits[key[0]])
            else:
                self._entries.move_to_end(key)
            stamps.append(now)
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    def record_success(self, ip: str, account: str | None = None) -> None:
        """Forget the account's failures (the network's stay; see the module notes)."""
        del ip
        if account and account.strip():
            self._entries.pop(("account", account.strip().lower()), None)

    def check(self, ip: str, account: str | None = None) -> float | None:
        """Seconds until a login attempt is allowed, or None if it is allowed now."""
        now = self._clock()
        self._expire(now)
        wait = 0.0
        for key in self._keys(ip, account):
            stamps = self._recent(key, now)
            if stamps is not None and len(stamps) >= self._limits[key[0]]:
                wait = max(wait, stamps[0] + self._window - now)
        return wait if wait > 0 else None

    def is_blocked(self, ip: str, account: str | None = None) -> bool:
        return self.check(ip, account) is not None

    # -- attempts in flight ---------------------------------------------------

    def room(self, key: _Key) -> int | None:
        """How many more attempts may begin under `key` now; None while it is blocked."""
        now = self._clock()
        stamps = self._recent(key, now)
        failures = len(stamps) if stamps is not None else 0
        limit = self._limits[key[0]]
        if failures >= limit:
            return None
        return max(0, limit - failures - self._in_flight.get(key, 0))

    def busy_key(self, ip: str, account: str | None = None) -> _Key | None:
        """A key with no room for one more attempt (blocked or full of attempts in flight), or None."""
        for key in self._keys(ip, account):
            if not self.room(key):
                return key
        return None

    def begin(self, ip: str, account: str | None = None) -> None:
        """Count one attempt in flight (after `check` and `busy_key` allowed it)."""
        for key in self._keys(ip, account):
            self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def end(self, ip: str, account: str | None, *, ok: bool | None) -> None:
        """Settle an attempt that `begin` counted: a success, a failure, or None (no answer: not counted)."""
        for key in self._keys(ip, account):
            n = self._in_flight.get(key, 0) - 1
            if n > 0:
                self._in_flight[key] = n
            else:
                self._in_flight.pop(key, None)
        if ok:
            self.record_success(ip, account)
        elif ok is False:
            self.record_failure(ip, account)
