"""The queue runner: claim due rows, deliver them (remote by SMTP, local retries into the store), settle, bounce.

Implementation notes (invariants):
- Probe (delivery.links) → claim (commit) → deliver (no transaction open) → settle (commit).
- One SMTP transaction per (message, destination domain); one log line per
  recipient per attempt, with the queue id. A round's messages for one link
  go as one batch over pooled connections (delivery.outbound), 特急 first,
  then 加急, then routine: each level starts when the one above has its
  replies, so an urgent message is never overtaken on its link. One queued
  while a round is sending waits for that round (CLAIM_BATCH messages, a few
  seconds over a WAN link), then goes first.
- A link that fails at the connection level is marked down; its rows are
  settled as a temporary failure waiting for it (Settle.link) and later rows
  for it are settled so without a connection ("via=link-down"), each still
  counting an attempt on its back-off, so delay warnings and expiry hold.
  One node probes it; the probe's success releases them all at once.
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
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from mailboxes.errors import NotFound

from . import dsn
from .envelope import MAIL_LOOP, Reply
from .links import Links
from .outbound import Outbound, RcptResult, Request, link_key, route_failure
from .pullroute import PullRouting
from .queue import FAILED, QUEUED, SENT, Claimed, Queue, Settle
from .received import MAX_RECEIVED, hop_count
from .routes import RouteError, Target
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


class Worker(PolledLoop):
    name = "queue"
    log = log

    def __init__(self, queue: Queue, submitter: Submitter, outbound: Outbound, *, policy: RetryPolicy,
                 clock: Callable[[], datetime], concurrency: int = 4, links: Links | None = None,
                 pull: PullRouting | None = None) -> None:
        self.queue = queue
        self.pull = pull  # domains on a pull route are held for their district (issue 12 point 5)
        self.links = links or Links(queue.db, node=queue.node, clock=clock)
        self._targets: dict[str, Target] = {}  # link -> the route's target last seen for it (the probe's TLS/AUTH)
        self.probes_ok = 0
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
        await self.outbound.close()
        await self.queue.close()

    async def _next_due(self) -> datetime | None:
        times = [x for x in (await self.queue.next_due(), await self.links.next_probe()) if x is not None]
        return min(times) if times else None

    def _max_sleep(self) -> float:
        return min(IDLE_POLL_SECONDS, self.queue.lease.total_seconds())

    async def run_once(self) -> int:
        """One round: probe links that are due, claim what is due and deliver it all; returns how much was done."""
        self._wake.clear()
        released = await self._probe_links()
        claimed = await self.queue.claim(CLAIM_BATCH)
        if not claimed:
            return released
        keeper = asyncio.create_task(self._keep_leases([c.recipient_id for c in claimed]))
        try:
            await self._deliver(claimed)
        finally:
            keeper.cancel()
        self.settled.set()
        return len(claimed) + released

    async def _keep_leases(self, ids: list[int]) -> None:
        """Renew the leases of this round's rows while its attempts run (a dead node's lapse; queue.py notes)."""
        every = max(1.0, self.queue.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await self.queue.renew(ids)
            except Exception:  # noqa: BLE001 - the database may be away for a moment; the next try may work
                log.exception("queue: renewing leases failed")

    # --- links: down, probed, up (delivery.links) ---------------------------------------------

    async def _probe_links(self) -> int:
        """Probe the down links this node won the probe of; returns how many came back up."""
        won = await self.links.claim_probes()
        if not won:
            return 0
        return sum(await asyncio.gather(*(self._probe(link) for link in won)))

    async def _probe(self, link: str) -> int:
        host, _, port = link.rpartition(":")
        known = self._targets.get(link)
        target = known or Target(host, int(port), "opportunistic", "probe")
        try:
            why = await self.outbound.probe(target, keep=known is not None)
        except Exception as exc:  # noqa: BLE001 - a probe must not end the round
            why = f"probe failed: {exc.__class__.__name__}"
        if why is not None:
            await self.links.probe_failed(link, why)
            log.info("link %s still down: %s", link, why)
            return 0
        n = await self.links.mark_up(link)
        self.probes_ok += 1
        log.info("link %s up again (probe answered); %d waiting recipient(s) released, urgent first", link, n)
        return 1

    async def _mark_down(self, down: dict[str, str]) -> None:
        for link, why in down.items():
            if await self.links.mark_down(link, why):
                log.warning("link %s down: %s; mail for it waits, probed from now on", link, why)

    # --- one round's deliveries ----------------------------------------------------------------

    async def _deliver(self, claimed: list[Claimed]) -> None:
        """Group the rows per message and domain, then per link: one batch per link, local and loop rows apart."""
        groups: dict[tuple[int, str], list[Claimed]] = {}
        for c in claimed:  # claim order: urgent first
            groups.setdefault((c.message_id, c.domain), []).append(c)
        data = await self.queue.data_many({mid for mid, _ in groups})
        local = await self.submitter.local_domains()
        down = await self.links.down()
        tasks, links = [], {}
        for (mid, domain), rows in groups.items():
            d = data.get(mid)
            if d is None:
                log.info("delivery queue_id=%s skipped: deleted from the queue meanwhile", rows[0].queue_id)
            elif hop_count(d) > MAX_RECEIVED:  # RFC 5321 §6.3: a loop; bounce rather than pass it on
                loop = [RcptResult(r.rcpt, "perm", MAIL_LOOP.enhanced, str(MAIL_LOOP)) for r in rows]
                tasks.append(self._guarded(rows, self._settle(rows, loop, "-", d)))
            elif domain in local:
                tasks.append(self._guarded(rows, self._attempt_local(rows, d)))
            elif self.pull is not None and (pull := await self.pull.route(domain)) is not None:
                tasks.append(self._guarded(rows, self._hold_for_pull(rows, d, pull)))
            else:
                try:
                    targets = await self.outbound.routes.targets(domain)
                except RouteError as exc:
                    tasks.append(self._guarded(rows, self._settle(rows, route_failure(exc, [r.rcpt for r in rows]),
                                                                  "-", d)))
                    continue
                for tg in targets:
                    self._targets[link_key(tg)] = tg
                live = tuple(tg for tg in targets if link_key(tg) not in down)
                if not live:
                    tasks.append(self._guarded(rows, self._park(rows, d, link_key(targets[0]))))
                    continue
                links.setdefault(tuple(map(link_key, live)), (live, []))[1].append((rows, d))
        tasks += [self._send_link(list(live), items) for live, items in links.values()]
        await asyncio.gather(*tasks)

    async def _guarded(self, rows: list[Claimed], work: Awaitable[None]) -> None:
        try:
            await work
        except NotFound:
            log.info("delivery queue_id=%s skipped: deleted from the queue meanwhile", rows[0].queue_id)
        except Exception:  # noqa: BLE001 - the rows stay claimed; their lease runs out and they are retried
            log.exception("delivery queue_id=%s failed before it was settled", rows[0].queue_id)

    async def _attempt_local(self, rows: list[Claimed], data: bytes) -> None:
        async with self._slots:
            results = await self._local(rows, data)
            self.attempts += len(rows)
            await self._settle(rows, results, "local", data)

    async def _hold_for_pull(self, rows: list[Claimed], data: bytes, route) -> None:
        async with self._slots:
            results, via = await self.pull.hold(route, rows[0].mail_from, [r.rcpt for r in rows], data)
            self.attempts += len(rows)
            await self._settle(rows, results, via, data)

    async def _park(self, rows: list[Claimed], data: bytes, link: str) -> None:
        """The link is down: no connection; the rows wait for its probe (their attempt count and expiry go on)."""
        why = f"link {link} is down; waiting for it to answer a probe"
        await self._settle(rows, [RcptResult(r.rcpt, "temp", "4.4.1", why) for r in rows], "link-down", data, link)

    async def _send_link(self, targets: list[Target], items: list[tuple[list[Claimed], bytes]]) -> None:
        """Send a link's messages over pooled connections: each urgency level after the one above has gone."""
        primary = link_key(targets[0])
        items.sort(key=lambda it: min(r.priority for r in it[0]))  # stable: claim order within a level
        async with self._slots:
            for _, level in itertools.groupby(items, key=lambda it: min(r.priority for r in it[0])):
                level = list(level)
                down = await self.links.down()  # an earlier level may have found the link down
                live = [tg for tg in targets if link_key(tg) not in down]
                if not live:
                    await asyncio.gather(*(self._guarded(rows, self._park(rows, d, primary)) for rows, d in level))
                    continue
                batch = await self.outbound.send_batch(
                    live, [Request(rows[0].mail_from, tuple(r.rcpt for r in rows), d) for rows, d in level])
                self.attempts += sum(len(rows) for rows, _ in level)
                await self._mark_down(batch.down)
                wait_for = primary if batch.down else None
                for (rows, _), res in zip(level, batch.results):
                    if len(res) != len(rows):  # never expected: a result per recipient, or the rows would hang
                        log.error("delivery queue_id=%s: no result from the batch; retried", rows[0].queue_id)
                        res[:] = [RcptResult(r.rcpt, "temp", "4.4.2", "no result from the connection") for r in rows]
                await asyncio.gather(*(self._guarded(rows, self._settle(rows, res, batch.via, d, wait_for))
                                       for (rows, d), res in zip(level, batch.results)))

    async def _local(self, rows: list[Claimed], data: bytes) -> list[RcptResult]:
        out = []
        for r in rows:
            why: Reply | None = await self.submitter.deliver_local(r.rcpt, data, r.mail_from, r.queue_id)
            if why is None:
                out.append(RcptResult(r.rcpt, "ok", "2.0.0", "delivered to the local mailbox"))
            else:
                out.append(RcptResult(r.rcpt, "temp" if why.is_transient else "perm", why.enhanced,
                                      str(why).replace("\r\n", " ")))
        return out

    async def _settle(self, rows: list[Claimed], results: list[RcptResult], via: str, data: bytes,
                      link: str | None = None) -> None:
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
            settles.append(Settle(row.recipient_id, state, tries, nxt, None if state == SENT else res.reply, warned,
                                  link if state == QUEUED else None))
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
