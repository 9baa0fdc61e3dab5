"""The events runner: claims accepted events, sends each through submit() (or holds it for digests), settles it; sends due digests.

Implementation notes (invariants)
- Claim (commit) → build and submit (no transaction open) → settle (commit), as the delivery
  queue's worker does. The row was committed before the API answered 202, so an event that
  was acknowledged is delivered after any crash.
- Exactly once: a claim whose `attempts` was already above 0 was interrupted (the process died
  between claim and settle, perhaps after submit() wrote some copies). Before sending again,
  each recipient's folders are searched (the substring index over header fields) for the
  event's Message-ID; those who have it are left out. The Message-ID names the event and its
  queue id, so only this sending matches (a resend has a new queue id).
- Recipients who chose a digest for the event's type get a digest item instead (urgent events
  are always sent at once; the choices of a round's events are read in one query); digests are one message per person per period, grouped by type,
  searched for in the same way before they are sent, so a crash does not send one twice. A
  person's due items are claimed with a lease (EventStore.due_digests), so two nodes on one
  database do not both send them.
- Temporary refusals (nothing could be written) are retried on RETRY_DELAYS; after the last
  the event is failed. The delivered/failed webhook callback is written in the settle's own
  transaction (bridges/callbacks.py); `on_settled` hooks run after that commit (the sender's poke).
- Woken by `poke()` (new events, resend), else at the next due time, else every IDLE_POLL_SECONDS.
  Time comes from the injected clock, so tests move it by hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from delivery.runner import PolledLoop
from delivery.submit import Submission, Submitter
from mailboxes.errors import NotFound
from mailboxes.events import FAILED, PENDING, SENT, Event, EventStore
from mailboxes.model import Account

from . import notify

log = logging.getLogger("postroom.events")

CLAIM_BATCH = 256  # events per round
CONCURRENCY = 64  # events submitted at once (their writes share group commits)
PREFETCH_PEOPLE = 20_000  # recipients of one round whose digest choices are read together (memory bound)
IDLE_POLL_SECONDS = 30.0
INTAKE_DEFER = 1.0  # seconds an accepted event waits for the posts behind it at most (then a round goes on)
INTAKE_LOOK = 0.01  # seconds between two looks at the intake while waiting
monotonic = time.monotonic  # the wait's clock (tests move it)
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
                timedelta(hours=6))  # after the last, the event is failed
DIGEST_PEOPLE = 100  # digests sent per round
DIGEST_RECHECK = 30.0  # seconds a round trusts the earliest digest time read before a sleep (other nodes hold items too)
DIGEST_MAX_ITEMS = 500  # events in one digest at most (the rest go in the next one)
DAILY_AT_UTC_HOUR = 0  # daily digests are due at 00:00 UTC (08:00 in China)

Settled = Callable[[Event, str], Awaitable[None]]


def digest_due(mode: str, now: datetime) -> datetime:
    """When a digest of this mode that starts collecting now is due: the next full hour, or the next day."""
    now = now.astimezone(timezone.utc)
    if mode == "hourly":
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    day = now.replace(hour=DAILY_AT_UTC_HOUR, minute=0, second=0, microsecond=0)
    return day if day > now else day + timedelta(days=1)


class EventWorker(PolledLoop):
    name = "events"
    log = log

    def __init__(self, store: EventStore, submitter: Submitter, *, sources: Callable[[int], Awaitable[str]],
                 templates: notify.Templates, hostname: str, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.submitter = submitter
        self.mb = submitter.mb
        self.source_name = sources
        self.templates = templates
        self.hostname = hostname
        self.clock = clock
        self.on_settled: list[Settled] = []
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._behind = False  # the last round took a full CLAIM_BATCH: more waits
        self.idle = False  # sleeping until poked or due (wants_help)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._warming: asyncio.Future | None = None
        # The earliest digest due, as read before the last sleep, and when (monotonic): a round looks for due
        # digests only once that time has come or the reading is DIGEST_RECHECK old. Looking every round cost a
        # read transaction per event at low rates (each event makes two rounds).
        self._digest_at: datetime | None = None
        self._digest_read: float | None = None
        self.settled = asyncio.Event()  # set after every round that settled something (tests watch it)

    def poke(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="events-worker")
        # Compiled beside the loop, not by the first deliveries on it (Templates.warm).
        self._warming = asyncio.get_running_loop().run_in_executor(None, self.templates.warm)

    async def close(self) -> None:
        self._stopping = True
        self.poke()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        await self.store.close()

    async def _let_intake_go_first(self) -> None:
        """While posts crowd in (EventStore.intake_busy), wait for them, for INTAKE_DEFER at most.

        A post and a delivery share this process's event loop and the store's writer: each post's
        202 waited behind the worker's deliveries, so a burst was accepted at the pace it was
        delivered. Now a burst is accepted first (and durably) and delivered right after; once a
        round finds a full batch waiting (`_behind`), rounds follow each other without waiting, so
        a steady flow above what can be delivered cannot starve delivery. The wait ends INTAKE_DEFER
        after the oldest event accepted here and not yet claimed (EventStore.unclaimed_since), not
        after the round began: in a flow that never stops, a round that began late gave events that
        had waited already a fresh INTAKE_DEFER more.
        """
        deadline = monotonic() + INTAKE_DEFER
        while self.store.intake_busy() and not self._stopping:
            first = self.store.unclaimed_since
            if monotonic() >= (deadline if first is None else min(deadline, first + INTAKE_DEFER)):
                break
            await asyncio.sleep(INTAKE_LOOK)

    async def _next_due(self) -> datetime | None:
        read = monotonic()
        event_at, self._digest_at = await self.store.next_times()
        self._digest_read = read
        dues = [d for d in (event_at, self._digest_at) if d is not None]
        return min(dues) if dues else None

    def _digests_may_be_due(self) -> bool:
        if self._digest_read is None or monotonic() - self._digest_read >= DIGEST_RECHECK:
            return True
        return self._digest_at is not None and self._digest_at <= self.clock()

    def _max_sleep(self) -> float:
        return IDLE_POLL_SECONDS

    async def _sleep(self) -> None:
        self.idle = True  # from here a poke is seen (nap returns at once for a set _wake)
        try:
            await super()._sleep()
        finally:
            self.idle = False

    def wants_help(self, new: int) -> bool:
        """Whether `new` events just committed here should wake the other processes' workers too.

        Not when this worker sleeps and they fit in a round's concurrent deliveries: it wakes and takes
        them at once, and waking every sibling for each of a trickle of posts cost each an empty claim
        and two reads (a sixth of the workers' CPU at 50 events/s). A worker in a round, a crowded
        intake (a burst) or a big batch does share them: a batch posted to one process is delivered by all.
        """
        return not self.idle or new > CONCURRENCY or self.store.intake_busy()

    async def run_once(self) -> int:
        """One round: due events, then due digests; returns how many were handled."""
        if not self._behind:
            await self._let_intake_go_first()
        self._wake.clear()
        claimed = await self.store.claim(CLAIM_BATCH)
        self._behind = len(claimed) == CLAIM_BATCH
        modes = await self._round_modes(claimed)
        await asyncio.gather(*(self._one(ev, modes.get(ev.id)) for ev in claimed), return_exceptions=True)
        digests = 0
        if self._digests_may_be_due():
            digests = await self._digests()
            if digests:
                self._digest_read = None  # more may be due: look again next round
        if claimed or digests:
            self.settled.set()
        return len(claimed) + digests

    async def _round_modes(self, claimed: list[Event]) -> dict[int, dict[int, str]]:
        """Event id -> {account id: digest mode} for the round's non-urgent events, read in one query
        (up to PREFETCH_PEOPLE recipients in all; an event beyond that asks for its own)."""
        events, people = [], 0
        for ev in claimed:
            if ev.urgency != "urgent" and people + len(ev.recipients) <= PREFETCH_PEOPLE:
                events.append(ev)
                people += len(ev.recipients)
        found = await self.store.digest_modes({i for ev in events for i, _ in ev.recipients}, {ev.type for ev in events})
        return {ev.id: {i: found[(i, ev.type)] for i, _ in ev.recipients if (i, ev.type) in found} for ev in events}

    # --- one event ---------------------------------------------------------------------

    async def _one(self, ev: Event, modes: dict[int, str] | None) -> None:
        async with self._slots:
            try:
                state, error = await self._deliver(ev, modes)
            except Exception as exc:  # noqa: BLE001 - e.g. a broken template override: retried, then failed
                log.exception("event %d (%s) failed before it was settled", ev.id, ev.ext_id)
                state, error = PENDING, f"{type(exc).__name__}: {exc}"
            retry_at = None
            if state == PENDING:
                if ev.attempts >= len(RETRY_DELAYS):
                    state = FAILED
                else:
                    retry_at = self.clock() + RETRY_DELAYS[ev.attempts]
            # If this settle is lost (the database away), the lease lapses and the next claim, with
            # attempts > 0, first looks for copies already delivered (see the module notes).
            changed = await self.store.settle(ev.id, state, error=error, retry_at=retry_at, claimed=ev)
            log.info("event id=%d source=%d ext_id=%s type=%s result=%s%s", ev.id, ev.source_id, ev.ext_id,
                     ev.type, state, f" error={error}" if error else "")
            if changed and state in (SENT, FAILED):
                for hook in self.on_settled:
                    try:
                        await hook(ev, state)
                    except Exception:  # noqa: BLE001 - a hook's failure is its own (it keeps a durable outbox)
                        log.exception("on_settled hook for event %d failed", ev.id)

    async def _deliver(self, ev: Event, modes: dict[int, str] | None = None) -> tuple[str, str | None]:
        """(sent | pending (retry) | failed, error text); `modes`: its recipients' digest choices, if known."""
        people = list(ev.recipients)
        if ev.attempts > 0:  # an interrupted claim: leave out who has it already
            msgid = notify.message_id(ev.id, ev.queue_id, self.hostname)
            people = [p for p in people if not await self._has(p[0], msgid)]
        if ev.urgency != "urgent" and people:
            if modes is None:
                modes = await self.store.modes([i for i, _ in people], ev.type)
            left = {i for i, _ in people}
            modes = {i: m for i, m in modes.items() if i in left}
            if modes:
                now = self.clock()
                await self.store.add_digest_items(ev.id, {i: digest_due(m, now) for i, m in modes.items()})
                people = [p for p in people if p[0] not in modes]
        if not people:
            return SENT, None
        addresses = [a for _, a in people]
        data = notify.build(ev, await self.source_name(ev.source_id), hostname=self.hostname, to=addresses,
                            templates=self.templates)
        out = await self.submitter.submit(Submission("", tuple(addresses), data, origin="bridge",
                                                     queue_id=ev.queue_id))
        if out.accepted:
            return SENT, None
        text = str(out.reply).replace("\r\n", " ")
        return (PENDING if out.reply.is_transient else FAILED), text

    async def _has(self, account_id: int, msgid: str) -> bool:
        """Whether this account holds a message with this Message-ID in any of its folders."""
        try:
            acct: Account = await self.mb.directory.account_by_id(account_id)
        except NotFound:
            return True  # gone: nothing to deliver to
        needle = msgid.strip("<>")
        for folder in await self.mb.store.folders(acct):
            if await self.mb.store.search_substring(folder.ref, "text", needle):
                return True
        return False

    # --- digests -------------------------------------------------------------------------

    async def _digests(self) -> int:
        due = await self.store.due_digests(DIGEST_PEOPLE, DIGEST_MAX_ITEMS)
        sent = 0
        for account_id, items in due.items():
            try:
                acct = await self.mb.directory.account_by_id(account_id)
            except NotFound:
                continue
            msgid = notify.digest_id(items[0].id, account_id, self.hostname)
            if not await self._has(account_id, msgid):
                sources = {sid: await self.source_name(sid) for sid in {i.event.source_id for i in items}}
                data = notify.build_digest([i.event for i in items], sources, hostname=self.hostname,
                                           to=acct.address, locale=items[0].event.locale, first_item=items[0].id,
                                           account_id=account_id, templates=self.templates)
                out = await self.submitter.submit(Submission("", (acct.address,), data, origin="bridge"))
                if not out.accepted and out.reply.is_transient:
                    log.warning("digest for %s not written now: %s", acct.address, out.reply)
                    continue  # claimed until the lease ends: a round after that tries again
            await self.store.digest_sent([i.id for i in items])
            sent += 1
        return sent
