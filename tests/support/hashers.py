"""Real Argon2 hashers that count what they do, for tests that assert how many password checks a login costs."""

from __future__ import annotations

import threading

from argon2 import PasswordHasher


class CountingHasher(PasswordHasher):
    """A real PasswordHasher that counts verifications (from any thread).

    ``gate``: the first ``gate`` verifications wait until that many have begun (or ``gate_timeout``
    passed), so attempts that a server lets through at once are all in flight together.
    """

    def __init__(self, *args, gate: int = 0, gate_timeout: float = 10.0, **kw) -> None:
        super().__init__(*args, **kw)
        self._lock = threading.Lock()
        self.verifications = 0
        self._gate = gate
        self._gate_timeout = gate_timeout
        self._all_in = threading.Event()

    def verify(self, hash, password) -> bool:  # noqa: A002 - argon2's own parameter name
        with self._lock:
            self.verifications += 1
            if self.verifications >= self._gate:
                self._all_in.set()
        if self._gate:
            self._all_in.wait(self._gate_timeout)
        return super().verify(hash, password)

    def reset(self) -> None:
        with self._lock:
            self.verifications = 0


def counting(time_cost: int = 1, memory_cost: int = 1024, parallelism: int = 1, **kw) -> CountingHasher:
    return CountingHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, **kw)
