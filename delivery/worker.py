"""The queue runner: claim due rows, deliver them (remote by SMTP, local retries into the store), settle, bounce.

Implementation notes (invariants):
- Claim (commit) → deliver (no transaction open) → settle (commit).
- One SMTP transaction per (message, destination domain); one log line per
  recipient per attempt, with the queue id.
- Temporary failures are retried on `delivery.schedule`'s back-off, measured
  from the message's arrival; one "delayed" DSN once it has waited
  `warn_after`; a permanent failure, or expiry, bounces (RFC 3464). The DSN is
  committed before the row is settled: a crash in between repeats the DSN
  rather than losing it.
- A queued message with more than MAX_RECEIVED Received fields is bounced
  5.4.6 without an attempt (RFC 5321 §6.3), wherever it was going.
- Woken by `poke()` (new mail queued here, `postroom queue retry`, tests),
  else at the next due time, else every IDLE_POLL_SECONDS (rows other nodes
  queued) or every lease, whichever is shorter: a claim another node took
  after this one went to sleep lapses within a lease if that node died, and
  is then delivered from here within two. Time comes from the injected
  clock, so tests move it by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from mailboxes.errors import NotFound

from . import dsn
from .envelope import MAIL_LOOP, Reply
from .outbound import Outbound, RcptResult
from .queue import FAILED, QUEUED, SENT, Claimed, Queue, Settle
from .received import MAX_RECEIVED, hop_count
from .runner import PolledLoop
from .schedule import RetryPolicy, expires_at, next_attempt, should_warn_delay
from .submit import Submitter

log = logging.getLogger("postroom.queue")

SettledHook = Callable[[list[Claimed], list[str], list[RcptResult], bytes], Awaitable[None]]

IDLE_POLL_SECONDS = 30.0
CLAIM_BATCH = 64


def retry_policy(delays_s: list[int], expire_after_s: int, warn_after_s: int) -> RetryPolicy:
    """[queue] retry_delays: the steps, the last one repeating until `expire_after`."""
    steps = tuple(timedelta(seconds=s) for s in delays_s)
    return RetryPolicy(delays=steps[:-1], repeat_every=steps[-1], give_up_after=timedelta(seconds=expire_after_s),
                       warn_after=timedelta(seconds=warn_after_s))


async def nap(wake: asyncio.Event, cap: float, next_due: Callable[[], Awaitable[datetime | None]] | None,
              clock: Callable[[], datetime]) -> None:
    """A runner's idle wait: until `wake` is set, the next due time comes, or `cap` seconds pass."""
    delay = cap
    if next_due is not None:
        try:
            due = await next_due()
        except Exception:  # noqa: BLE001 - the database may be away for a moment; wake at the cap
            due = None
        if due is not None:
            delay = min(delay, max(0.0, (due - clock()).total_seconds()))
    if delay <= 0:
        return
    try:
        await asyncio.wait_for(wake.wait(), delay)
    except asyncio.TimeoutError:
        pass


class Worker(PolledLoop):
    name = "queue"
    log = log

    def __init__(self, queue: Queue, submitter: Submitter, outbound: Outbound, *, policy: RetryPolicy,
                 clock: Callable[[], datetime], concurrency: int = 4) -> None:
        self.queue = queue
        self.submitter = submitter
        self.outbound = outbound
        self.policy = policy
        self.clock = clock
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self.attempts = 0  # recipient attempts made (tests and the benchmark watch it)
        self.settled = asyncio.Event()  # set after every round that settled something
        # Called after each settle with (rows, their new states, results, message bytes): the document
        # tracker (bridges) learns there when a document message was sent or failed. A hook's error is
        # logged and never undoes the settle.
        self.settled_hooks: list[SettledHook] = []

    def poke(self) -> None:
        """Run due rows now (and re-read the next due time)."""
        self._wake.set()

    async def start(self) -> None:
        n = await self.queue.release_stale_claims()
        if n:
            log.info("queue: %d deliveries interrupted by a restart are due again", n)
        self._task = asyncio.create_task(self._run(), name="queue-worker")

    async def close(self) -> None:
        await self.submitter.personal.settle()  # out-of-office replies in flight are queued before the queue closes
        self._stopping = True
        self.poke()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.queue.close()

    async def _next_due(self) -> datetime | None:
        return await self.queue.next_due()

    def _max_sleep(self) -> float:
        return min(IDLE_POLL_SECONDS, self.queue.lease.total_seconds())

    async def run_once(self) -> int:
        """One round: claim what is due and deliver it all; returns how many recipient rows were handled."""
        self._wake.clear()
        claimed = await self.queue.claim(CLAIM_BATCH)
        if not claimed:
            return 0
        groups: dict[tuple[int, str], list[Claimed]] = {}
        for c in claimed:
            groups.setdefault((c.message_id, c.domain), []).append(c)
        keeper = asyncio.create_task(self._keep_leases([c.recipient_id for c in claimed]))
        try:
            await asyncio.gather(*(self._attempt(g) for g in groups.values()))
        finally:
            keeper.cancel()
        self.settled.set()
        return len(claimed)

    async def _keep_leases(self, ids: list[int]) -> None:
        """Renew the leases of this round's rows while its attempts run (a dead node's lapse; queue.py notes)."""
        every = max(1.0, self.queue.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await self.queue.renew(ids)
            except Exception:  # noqa: BLE001 - the database may be away for a moment; the next try may work
                log.exception("queue: renewing leases failed")

    async def _attempt(self, rows: list[Claimed]) -> None:
        try:
            await self._attempt_once(rows)
        except NotFound:
            log.info("delivery queue_id=%s skipped: deleted from the queue meanwhile", rows[0].queue_id)
        except Exception:  # noqa: BLE001 - the rows stay claimed; their lease runs out and they are retried
            log.exception("delivery queue_id=%s failed before it was settled", rows[0].queue_id)

    async def _attempt_once(self, rows: list[Claimed]) -> None:
        async with self._slots:
            first = rows[0]
            data = await self.queue.data(first.message_id)
            if hop_count(data) > MAX_RECEIVED:  # RFC 5321 §6.3: a loop; bounce rather than pass it on
                results, via = [RcptResult(r.rcpt, "perm", MAIL_LOOP.enhanced, str(MAIL_LOOP)) for r in rows], "-"
            elif first.domain in await self.submitter.local_domains():
                results, via = await self._local(rows, data), "local"
            else:
                results, via = await self.outbound.send(first.mail_from, [r.rcpt for r in rows], data, first.domain)
            self.attempts += len(rows)
            await self._settle(rows, results, via, data)

    async def _local(self, rows: list[Claimed], data: bytes) -> list[RcptResult]:
        out = []
        for r in rows:
            why: Reply | None = await self.submitter.deliver_local(r.rcpt, data, r.mail_from)
            if why is None:
                out.append(RcptResult(r.rcpt, "ok", "2.0.0", "delivered to the local mailbox"))
            else:
                out.append(RcptResult(r.rcpt, "temp" if why.is_transient else "perm", why.enhanced,
                                      str(why).replace("\r\n", " ")))
        return out

    async def _settle(self, rows: list[Claimed], results: list[RcptResult], via: str, data: bytes) -> None:
        now = self.clock()
        first = rows[0]
        settles, failed, delayed = [], [], []
        for row, res in zip(rows, results):
            tries = row.attempts + 1
            nxt = None
            if res.outcome == "ok":
                state = SENT
            elif res.outcome == "perm":
                state = FAILED
                failed.append(dsn.RecipientStatus(row.rcpt, "failed", res.status, diagnostic=res.reply,
                                                  remote_mta=res.host, last_attempt=now))
            else:
                nxt = next_attempt(row.created_at, tries, now, self.policy)
                if nxt is None:  # expired: RFC 3463 X.4.7 delivery time expired
                    state = FAILED
                    failed.append(dsn.RecipientStatus(row.rcpt, "failed", "5.4.7", diagnostic=res.reply,
                                                      remote_mta=res.host, last_attempt=now))
                else:
                    state = QUEUED
            warned = row.warned
            if state == QUEUED and should_warn_delay(row.created_at, now, row.warned, self.policy):
                warned = True
                delayed.append(dsn.RecipientStatus(
                    row.rcpt, "delayed", res.status if res.status.startswith("4") else "4.0.0",
                    diagnostic=res.reply, remote_mta=res.host, last_attempt=now,
                    will_retry_until=expires_at(row.created_at, self.policy)))
            settles.append(Settle(row.recipient_id, state, tries, nxt, None if state == SENT else res.reply, warned))
            log.info("delivery queue_id=%s to=<%s> via=%s attempt=%d result=%s status=%s next=%s reply=%s",
                     row.queue_id, row.rcpt, via, tries, state, res.status,
                     nxt.isoformat(timespec="seconds") if nxt else "-", res.reply)
        if failed:
            await self.submitter.bounce(first.queue_id, first.mail_from, data, failed, arrival=first.created_at)
        if delayed:
            await self.submitter.bounce(first.queue_id, first.mail_from, data, delayed, delayed=True,
                                        arrival=first.created_at)
        await self.queue.settle(settles)
        for hook in self.settled_hooks:
            try:
                await hook(rows, [x.state for x in settles], results, data)
            except Exception:
                log.exception("settled hook failed queue_id=%s", first.queue_id)
