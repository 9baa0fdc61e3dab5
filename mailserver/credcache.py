"""A short-lived in-memory cache of verified credentials, so a reconnecting client does not pay Argon2 again.

Implementation notes
- Keyed by HMAC-SHA256 over (address, password) with a random key made per
  process: neither the password nor an unkeyed hash of it is ever held, and
  the key dies with the process.
- A hit is only a hint: the login still reads the account (one cheap read) and
  accepts only if the stored hash it matched is unchanged and the account is
  enabled (Directory.credential_account). A password change, disable, removal
  or app-password revocation therefore takes effect at once, on every node,
  whichever process made it (the hash string changes with every new password).
- An entry lives `ttl_s` from its verification (a hit does not extend it), and
  at most `max_entries` are kept (the oldest go first). Pure: the clock is
  passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable

from mailboxes.model import Credential

__all__ = ["CredentialCache"]


class CredentialCache:
    """Recently verified credentials by keyed hash; `ttl_s` 0 turns the cache off."""

    def __init__(self, *, clock: Callable[[], float], ttl_s: float = 300.0, max_entries: int = 10_000,
                 secret: bytes | None = None) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError("bad credential cache limits")
        self._clock = clock
        self._ttl = float(ttl_s)
        self._max = max_entries
        self._secret = secret or secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[float, Credential]] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, address: str, password: str) -> bytes:
        data = address.encode("utf-8", "surrogatepass") + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def get(self, key: bytes) -> Credential | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: bytes, credential: Credential) -> None:
        if not self._ttl:
            return
        self._entries[key] = (self._clock() + self._ttl, credential)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, key: bytes) -> None:
        self._entries.pop(key, None)
