"""Outbound links that went down: their state in the central database, one probe at a time, and the release of what waited.

Implementation notes (issue 12 point 4: "probed, not hammered")
- A link is a host and port a route or an MX record names ("host:port"). When a connection to
  it fails at the connection level the worker marks it down here; rows for it then wait without
  a connection attempt each, and are settled with `link` set to it (queue.Settle.link).
- While a link is down, one node at a time probes it: `claim_probes` takes the probe with a
  conditional UPDATE (state down, probe due, no live probe lease), which on PostgreSQL re-checks
  its WHERE after waiting for a competing update's row lock, so two nodes never both win; on
  SQLite the write transaction is exclusive. A probe that fails backs off along `delays`
  (the last repeating); a node that dies mid-probe loses its lease and another probes.
- When a probe succeeds the link is marked up and every queued row waiting for it is due at
  once, in the same transaction; claims then take them urgent first (queue.claim). The rows'
  own attempt counters and expiry are untouched: they still bounce when they expire.
- The table is small (the links that ever went down); reads of it are whole-table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, insert, or_, select, update

from mailboxes import schema as t
from mailboxes.db import Database

from .queue import QUEUED, aware

UP, DOWN = "up", "down"
PROBE_DELAYS = (5, 10, 30, 60)  # seconds from a failure to the next probe; the last repeats ([queue] probe_delays)
PROBE_LEASE = timedelta(seconds=60)  # a probe not finished within this is taken to be dead
MAX_ERROR_TEXT = 500


@dataclass(frozen=True)
class LinkState:
    link: str
    state: str
    failures: int
    down_since: datetime | None
    next_probe_at: datetime | None
    probing: bool
    last_error: str | None
    changed_at: datetime


def probe_delay(failures: int, delays: Sequence[float] = PROBE_DELAYS) -> timedelta:
    """The wait before the next probe after `failures` failed probes (0: the link just went down)."""
    return timedelta(seconds=delays[min(failures, len(delays) - 1)])


class Links:
    def __init__(self, db: Database, *, node: str, clock: Callable[[], datetime],
                 delays: Sequence[float] = PROBE_DELAYS) -> None:
        if not delays or any(d <= 0 for d in delays):
            raise ValueError("probe delays must be positive")
        self.db = db
        self.node = node[:64]
        self.clock = clock
        self.delays = tuple(delays)

    def _now(self) -> datetime:
        return aware(self.clock())

    async def states(self) -> dict[str, LinkState]:
        c = t.queue_links.c
        now = self._now()
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.queue_links).order_by(c.link))).all()
        return {r.link: LinkState(r.link, r.state, r.failures, aware(r.down_since), aware(r.next_probe_at),
                                  r.probe_until is not None and aware(r.probe_until) > now,
                                  r.last_error, aware(r.changed_at)) for r in rows}

    async def down(self) -> set[str]:
        async with self.db.read() as conn:
            return set((await conn.execute(select(t.queue_links.c.link).where(
                t.queue_links.c.state == DOWN))).scalars().all())

    async def mark_down(self, link: str, why: str) -> bool:
        """Record a connection-level failure; True when this turned the link down (it was up or unknown)."""
        c = t.queue_links.c
        now = self._now()
        why = why[:MAX_ERROR_TEXT]
        async with self.db.write() as conn:
            res = await conn.execute(update(t.queue_links).where(and_(c.link == link, c.state == UP)).values(
                state=DOWN, failures=0, down_since=now, next_probe_at=now + probe_delay(0, self.delays),
                probe_by=None, probe_until=None, last_error=why, changed_at=now))
            if res.rowcount:
                return True
            known = (await conn.execute(select(c.state).where(c.link == link))).scalar()
            if known is None:
                await conn.execute(insert(t.queue_links).values(
                    link=link, state=DOWN, failures=0, down_since=now,
                    next_probe_at=now + probe_delay(0, self.delays), last_error=why, changed_at=now))
                return True
            await conn.execute(update(t.queue_links).where(c.link == link).values(last_error=why))
        return False

    async def claim_probes(self, limit: int = 8) -> list[str]:
        """Take the probe of up to `limit` down links whose probe is due and not held by a live node."""
        c = t.queue_links.c
        now = self._now()
        due = and_(c.state == DOWN, c.next_probe_at <= now, or_(c.probe_until.is_(None), c.probe_until < now))
        won = []
        async with self.db.write() as conn:
            for link in (await conn.execute(select(c.link).where(due).order_by(c.next_probe_at)
                                            .limit(limit))).scalars().all():
                res = await conn.execute(update(t.queue_links).where(and_(c.link == link, due)).values(
                    probe_by=self.node, probe_until=now + PROBE_LEASE))
                if res.rowcount:
                    won.append(link)
        return won

    async def probe_failed(self, link: str, why: str) -> None:
        c = t.queue_links.c
        now = self._now()
        async with self.db.write() as conn:
            await conn.execute(update(t.queue_links).where(and_(
                c.link == link, c.probe_by == self.node, c.state == DOWN)).values(
                failures=c.failures + 1, probe_by=None, probe_until=None, last_error=why[:MAX_ERROR_TEXT],
                next_probe_at=_after(now, self.delays, c.failures)))

    async def mark_up(self, link: str) -> int:
        """The link answered: up, and every queued row waiting for it due now; returns how many were released."""
        c, r = t.queue_links.c, t.queue_recipients.c
        now = self._now()
        async with self.db.write() as conn:
            await conn.execute(update(t.queue_links).where(c.link == link).values(
                state=UP, probe_by=None, probe_until=None, next_probe_at=None, changed_at=now))
            res = await conn.execute(update(t.queue_recipients).where(and_(
                r.link == link, r.state == QUEUED)).values(next_attempt_at=now, link=None))
        return res.rowcount or 0

    async def next_probe(self) -> datetime | None:
        c = t.queue_links.c
        async with self.db.read() as conn:
            return aware((await conn.execute(select(func.min(c.next_probe_at)).where(c.state == DOWN))).scalar())


def _after(now: datetime, delays: Sequence[float], failures_column):
    """next_probe_at after one more failed probe, as SQL: delays indexed by the failures so far + 1."""
    whens = [(failures_column + 1 == i, now + timedelta(seconds=d)) for i, d in enumerate(delays)]
    return case(*whens, else_=now + timedelta(seconds=delays[-1]))
