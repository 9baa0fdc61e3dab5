"""A clock tests can move: the store's `clock=` hooks call it for the time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, **kw) -> None:
        self.now += timedelta(**kw)
