"""The webhook sender: signs the outbox's callbacks (Standard Webhooks), POSTs them, retries with back-off until acknowledged.

The wire contract receivers rely on is in docs/webhooks.md. In short, every attempt is

    POST <the source's URL>
    Content-Type: application/json
    webhook-id: msg_<32 hex>          the delivery id: the same on every retry of one callback
    webhook-timestamp: <unix seconds> this attempt's time
    webhook-signature: v1,<base64 of HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>

where key is the base64-decoded part of the source's `whsec_` secret (standardwebhooks.com,
"Signature scheme"). Any 2xx answer acknowledges the callback; anything else (another status,
a redirect, no answer within the timeout, a refused connection, a TLS failure) is retried.

Implementation notes
- Back-off (`next_attempt`): after the n-th failed attempt the next is base·2^(n-1) later,
  capped at max_delay, each delay drawn uniformly from its upper half ("equal jitter", so
  a receiver that comes back is not hit by every sender at once); never later than
  created + max_age; a failure at or after that age makes the callback dead (logged).
- Bounded: one request lasts at most `timeout` (connect included); at most `concurrency`
  requests at once (the sender's slots and the HTTP connector's limit); the body is at most
  outbox.MAX_BODY_BYTES; a response body is never read; redirects are not followed.
- A request starts only when it ends (timeout included) before this node's lease on the row
  does; the lease is longer than the timeout (mailserver/config.py checks it). So while a
  node lives, no other node sends its rows; when it dies its rows are sent again after the
  lease: at least once, receivers dedupe on `webhook-id`.
- The secret is never logged, nor is a URL's query string (it may hold a receiver's token).
- Woken by `poke()` (a caller's commit, tests), a finished request, else at the next due
  time, else every IDLE_POLL_SECONDS (rows other nodes enqueued). Time comes from the
  injected clock; tests call `run_once()` and move the clock by hand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from delivery.queue import node_id, utcnow
from delivery.runner import nap
from mailboxes.errors import InvalidInput
from mailboxes.webhookendpoints import check_url, redacted_url, secret_key

from .outbox import DEAD, DELIVERED, PENDING, Claimed, Outbox, Settle

log = logging.getLogger("postroom.webhooks")

IDLE_POLL_SECONDS = 5.0
PRUNE_EVERY = timedelta(hours=1)
MAX_REASON = 100  # characters of a receiver's HTTP reason phrase kept in last_error
USER_AGENT = "Postroom-Webhooks/1"


@dataclass(frozen=True)
class Backoff:
    """When to retry: base·2^(n-1) after the n-th failure, at most max_delay, until max_age."""

    base: timedelta = timedelta(seconds=10)
    max_delay: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(days=3)

    def __post_init__(self) -> None:
        if min(self.base, self.max_delay, self.max_age) <= timedelta(0):
            raise ValueError("webhook back-off times must be positive")


def next_attempt(created_at: datetime, attempts: int, now: datetime, policy: Backoff,
                 rand: float) -> datetime | None:
    """When to try again after `attempts` failed attempts (the last at `now`); None: dead.

    `rand` in [0, 1) picks the delay inside the upper half of the step (equal jitter).
    """
    deadline = created_at + policy.max_age
    if now >= deadline:
        return None
    step = min(policy.base.total_seconds() * 2.0 ** min(max(attempts - 1, 0), 40), policy.max_delay.total_seconds())
    return min(now + timedelta(seconds=step * (0.5 + rand / 2)), deadline)


def signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' `webhook-signature` value: v1, base64 HMAC-SHA256 of "id.timestamp.body"."""
    mac = hmac.new(secret_key(secret), f"{delivery_id}.{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def signed_headers(secret: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp), "webhook-signature": signature(secret, delivery_id, timestamp, body)}


def _printable(text: str, limit: int) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


class Sender:
    """Sends due callbacks from the outbox; one per process (`postroom serve` starts it)."""

    name = "webhooks"

    def __init__(self, outbox: Outbox, *, backoff: Backoff = Backoff(), timeout: float = 10.0,
                 concurrency: int = 8, allow_plain_http: bool = False, keep: timedelta = timedelta(days=7),
                 clock: Callable[[], datetime] = utcnow, rand: Callable[[], float] = random.random) -> None:
        if timedelta(seconds=timeout) >= outbox.lease:
            raise ValueError("the outbox lease must be longer than the request timeout")
        self.outbox = outbox
        self.backoff = backoff
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.allow_plain_http = allow_plain_http
        self.keep = keep
        self.clock = clock
        self.rand = rand
        self._http: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._pruned_at: datetime | None = None
        self.attempts = 0  # requests made (tests and operators watch it)

    # --- life cycle -------------------------------------------------------------------

    def poke(self) -> None:
        """Look for due callbacks now (call after committing an enqueue)."""
        self._wake.set()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=False,
                headers={"User-Agent": USER_AGENT})
        return self._http

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def close(self) -> None:
        """Stop claiming; requests in flight finish (each within the timeout) and are settled."""
        self._stopping = True
        self.poke()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- rounds -----------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due (up to the free slots), send it all and settle it; how many were sent."""
        tasks = await self._start_due()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def _start_due(self) -> list[asyncio.Task]:
        free = self.concurrency - len(self._inflight)
        rows = await self.outbox.claim(free) if free > 0 else []
        tasks = []
        for row in rows:
            task = asyncio.create_task(self._attempt(row), name=f"webhook {row.delivery_id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)
            tasks.append(task)
        return tasks

    def _done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def _run(self) -> None:
        while not self._stopping:
            try:
                self._wake.clear()
                started = len(await self._start_due())
                await self._maybe_prune()
            except Exception:  # noqa: BLE001 - the database may be away for a moment; keep the sender alive
                log.exception("webhook round failed")
                started = 0
            if started and len(self._inflight) < self.concurrency:
                continue  # more may be due right now
            await self._sleep()

    async def _sleep(self) -> None:
        # All slots busy: a finishing request wakes us (`_done`); the poll is the fallback.
        free = len(self._inflight) < self.concurrency
        await nap(self._wake, min(IDLE_POLL_SECONDS, self.outbox.lease.total_seconds()),
                  self.outbox.next_due if free else None, self.clock)

    async def _maybe_prune(self) -> None:
        now = self.clock()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            n = await self.outbox.prune(self.keep)
            if n:
                log.info("webhooks: forgot %d delivered or dead callbacks older than %s", n, self.keep)

    # --- one callback -----------------------------------------------------------------

    async def _attempt(self, row: Claimed) -> None:
        try:
            await self._attempt_once(row)
        except Exception:  # noqa: BLE001 - the row stays claimed; its lease runs out and it is retried
            log.exception("webhook delivery=%s failed before it was settled", row.delivery_id)

    async def _attempt_once(self, row: Claimed) -> None:
        if row.url is None or row.secret is None:
            await self._settle(row, None, "no webhook endpoint for this source any more", final=True)
            return
        try:
            check_url(row.url, allow_plain_http=self.allow_plain_http)
            secret_key(row.secret)
        except InvalidInput as exc:  # the policy changed since the endpoint was set
            await self._settle(row, None, f"endpoint refused: {exc}", final=True)
            return
        now = self.clock()
        if now + timedelta(seconds=self.timeout) > row.claimed_until:
            # The lease would lapse mid-request and another node could send it too: leave it to lapse.
            log.warning("webhook delivery=%s not sent: its lease ends before the request could", row.delivery_id)
            return
        stamp = int(now.timestamp())
        status, error = None, None
        self.attempts += 1
        try:
            async with self._session().post(row.url, data=row.body, allow_redirects=False,
                                            headers=signed_headers(row.secret, row.delivery_id, stamp, row.body)
                                            ) as resp:
                status = resp.status
                if not 200 <= status <= 299:
                    error = f"HTTP {status} {_printable(resp.reason or '', MAX_REASON)}".rstrip()
        except asyncio.TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {_printable(str(exc), 300)}".replace(row.url, redacted_url(row.url))
        await self._settle(row, status, error, final=False)

    async def _settle(self, row: Claimed, status: int | None, error: str | None, *, final: bool) -> None:
        now = self.clock()
        tries = row.attempts + (0 if final else 1)
        nxt = None
        if error is None:
            state = DELIVERED
        else:
            nxt = None if final else next_attempt(row.created_at, tries, now, self.backoff, self.rand())
            state = DEAD if nxt is None else PENDING
        held = await self.outbox.settle(Settle(row.id, state, tries, nxt, status, error))
        where = redacted_url(row.url) if row.url else "-"
        if not held:
            log.warning("webhook delivery=%s source=%s to=%s result=%s, but its lease had lapsed meanwhile "
                        "(another node may send it again)", row.delivery_id, row.source, where, state)
        elif state == DEAD:
            log.warning("webhook delivery=%s source=%s kind=%s to=%s dead after %d attempts since %s: %s",
                        row.delivery_id, row.source, row.kind, where, tries,
                        row.created_at.isoformat(timespec="seconds"), error)
        else:
            log.info("webhook delivery=%s source=%s kind=%s to=%s attempt=%d result=%s status=%s next=%s error=%s",
                     row.delivery_id, row.source, row.kind, where, tries, state, status or "-",
                     nxt.isoformat(timespec="seconds") if nxt else "-", error or "-")


def build(central, config, *, clock: Callable[[], datetime] = utcnow) -> Sender:
    """A sender on the central database from the [webhooks] keys; `config` is a mailserver Config (read with .get)."""
    def key(name: str):
        return config.get("webhooks", name)

    outbox = Outbox(central, node=node_id(config.hostname), clock=clock, lease=timedelta(seconds=key("lease")))
    backoff = Backoff(base=timedelta(seconds=key("retry_base")), max_delay=timedelta(seconds=key("retry_max_delay")),
                      max_age=timedelta(seconds=key("max_age")))
    return Sender(outbox, backoff=backoff, timeout=float(key("timeout")), concurrency=key("concurrency"),
                  allow_plain_http=key("allow_plain_http"), keep=timedelta(days=key("keep_days")), clock=clock)


async def start(ctx) -> list:
    """The composition root's starter: the sender, also in `ctx.extras["webhooks"]` (its `poke()` for callers)."""
    sender = build(ctx.mailboxes.router.central, ctx.config, clock=ctx.extras.get("clock", utcnow))
    ctx.extras["webhooks"] = sender
    await sender.start()
    return [sender]
