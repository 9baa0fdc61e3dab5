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
  are always sent at once); digests are one message per person per period, grouped by type,
  searched for in the same way before they are sent, so a crash does not send one twice.
- Temporary refusals (nothing could be written) are retried on RETRY_DELAYS; after the last
  the event is failed. A sent or failed event's `delivered` / `failed` webhook callback (issue 11
  point 5) is recorded in the webhook outbox inside the settle's own transaction, so an outcome
  and its callback commit together (nothing is recorded for a source without an endpoint).
  `on_settled` hooks run after the commit (service.py pokes the webhook sender there).
- Woken by `poke()` (new events, resend), else at the next due time, else every IDLE_POLL_SECONDS.
  Time comes from the injected clock, so tests move it by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from delivery.runner import PolledLoop
from delivery.submit import Submission, Submitter
from mailboxes.errors import NotFound
from mailboxes.events import FAILED, PENDING, SENT, Event, EventStore
from mailboxes.leases import Leases
from mailboxes.model import Account

from . import notify, outbox

log = logging.getLogger("postroom.events")

CLAIM_BATCH = 64  # events per round
CONCURRENCY = 8  # events submitted at once
MAX_CALLBACK_ERROR = 500  # characters of the refusal text in a `failed` callback
IDLE_POLL_SECONDS = 30.0
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
                timedelta(hours=6))  # after the last, the event is failed
DIGEST_PEOPLE = 100  # digests sent per round
DIGEST_MAX_ITEMS = 500  # events in one digest at most (the rest go in the next one)
DIGEST_LEASE = "events-digests"  # one node sends the digests at a time (each would send its own copy)
DIGEST_LEASE_SECONDS = 120.0  # renewed every round that sends; a dead holder is replaced after this
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
                 templates: notify.Templates, hostname: str, clock: Callable[[], datetime],
                 leases: Leases | None = None, holder: str = "") -> None:
        """`leases`/`holder`: with several nodes or worker processes, only the lease's holder sends digests
        (two rounds reading the same due items would each send one); None: this worker always does."""
        self.store = store
        self.submitter = submitter
        self.mb = submitter.mb
        self.source_name = sources
        self.templates = templates
        self.hostname = hostname
        self.clock = clock
        self.on_settled: list[Settled] = []
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self.settled = asyncio.Event()  # set after every round that settled something (tests watch it)
        self.leases = leases
        self.holder = holder
        self.sends_digests = leases is None

    def poke(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="events-worker")

    async def close(self) -> None:
        self._stopping = True
        self.poke()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.store.close()

    async def _next_due(self) -> datetime | None:
        digest = await self.store.next_digest()
        if digest is not None and not self.sends_digests:  # another node's: look again when its lease may lapse
            digest = max(digest, self.clock() + timedelta(seconds=DIGEST_LEASE_SECONDS / 2))
        dues = [d for d in (await self.store.next_due(), digest) if d is not None]
        return min(dues) if dues else None

    def _max_sleep(self) -> float:
        return IDLE_POLL_SECONDS

    async def run_once(self) -> int:
        """One round: due events, then due digests; returns how many were handled."""
        self._wake.clear()
        claimed = await self.store.claim(CLAIM_BATCH)
        await asyncio.gather(*(self._one(ev) for ev in claimed), return_exceptions=True)
        digests = await self._digests()
        if claimed or digests:
            self.settled.set()
        return len(claimed) + digests

    # --- one event ---------------------------------------------------------------------

    async def _one(self, ev: Event) -> None:
        async with self._slots:
            counts: dict[str, int] = {"recipients": len(ev.recipients)}
            try:
                state, error, counts = await self._deliver(ev)
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
            also = await self._callback(ev, state, error, counts) if state in (SENT, FAILED) else None
            await self.store.settle(ev.id, state, error=error, retry_at=retry_at, also=also)
            log.info("event id=%d source=%d ext_id=%s type=%s result=%s%s", ev.id, ev.source_id, ev.ext_id,
                     ev.type, state, f" error={error}" if error else "")
            if state in (SENT, FAILED):
                for hook in self.on_settled:
                    try:
                        await hook(ev, state)
                    except Exception:  # noqa: BLE001 - a hook's failure is its own (it keeps a durable outbox)
                        log.exception("on_settled hook for event %d failed", ev.id)

    async def _callback(self, ev: Event, state: str, error: str | None, counts: dict[str, int]):
        """What records the `delivered` / `failed` webhook callback in the settle's transaction (issue 11 point 5)."""
        source = await self.source_name(ev.source_id)
        payload = {"event": ev.ext_id, "type": ev.type, **counts}
        if ev.unknown:
            payload["unknown_recipients"] = list(ev.unknown)
        if error:
            payload["error"] = error[:MAX_CALLBACK_ERROR]
        kind = "delivered" if state == SENT else "failed"

        async def record(conn) -> None:
            await outbox.enqueue(conn, source, kind, payload, clock=self.clock)
        return record

    async def _deliver(self, ev: Event) -> tuple[str, str | None, dict[str, int]]:
        """(sent | pending (retry) | failed, error text, how many were mailed now and how many wait for a digest)."""
        people = list(ev.recipients)
        if ev.attempts > 0:  # an interrupted claim: leave out who has it already
            msgid = notify.message_id(ev.id, ev.queue_id, self.hostname)
            people = [p for p in people if not await self._has(p[0], msgid)]
        digest = 0
        if ev.urgency != "urgent" and people:
            modes = await self.store.modes([i for i, _ in people], ev.type)
            if modes:
                now = self.clock()
                await self.store.add_digest_items(ev.id, {i: digest_due(m, now) for i, m in modes.items()})
                people = [p for p in people if p[0] not in modes]
                digest = len(modes)
        # Stable across an interrupted claim: digest people never hold the event's own message.
        counts = {"recipients": len(ev.recipients), "mailed": len(ev.recipients) - digest, "digest": digest}
        if not people:
            return SENT, None, counts
        addresses = [a for _, a in people]
        data = notify.build(ev, await self.source_name(ev.source_id), hostname=self.hostname, to=addresses,
                            templates=self.templates)
        out = await self.submitter.submit(Submission("", tuple(addresses), data, origin="bridge",
                                                     queue_id=ev.queue_id))
        if out.accepted:
            return SENT, None, counts
        text = str(out.reply).replace("\r\n", " ")
        return (PENDING if out.reply.is_transient else FAILED), text, counts

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
        if not await self._hold_digests():
            return 0
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
                    continue  # due still: the next round tries again
            await self.store.digest_sent([i.id for i in items])
            sent += 1
        return sent

    async def _hold_digests(self) -> bool:
        if self.leases is None:
            return True
        due = await self.store.next_digest()
        if due is None or due > self.clock():
            return False  # nothing due: no lease taken, nothing written
        held = await self.leases.acquire(DIGEST_LEASE, self.holder, DIGEST_LEASE_SECONDS)
        if held != self.sends_digests:
            log.info("digest lease %s holder=%s", "taken" if held else "lost", self.holder)
        self.sends_digests = held
        return held
