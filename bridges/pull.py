"""Pull mode at a district: fetch the mail the city holds for us over IMAP, deliver it here, and only then remove it there (issue 12 point 5).

Implementation notes (docs/pull.md tells administrators the same)
- One round (`Fetcher.fetch`, run on `[pull] interval` by `postroom serve` and by `postroom pull
  now` when the link comes up): log in (bridges.pullclient), SELECT INBOX, list the UIDs, and per
  batch of at most PULL_BATCH_MESSAGES messages and PULL_BATCH_BYTES bytes, in UID order:
  fetch, check each envelope's seal (delivery.pullroute), deliver it through the same door mail
  from other servers takes (delivery.Acceptor: DKIM checked, Received stamped, local copies
  written durably, so a document reaches the documents intake with its signature intact), record
  it (mailboxes.pulled), then UID STORE \\Deleted + UID EXPUNGE the batch (RFC 4315 §2.1).
- Exactly once: a message is removed upstream only after it is committed here; one seen again
  (the EXPUNGE was lost with the link) is recognised by (UIDVALIDITY, UID) or, after a UIDVALIDITY
  change, by its digest, and only removed. A district crash between the local commit and the
  record repeats that one message (as an SMTP 250 lost in flight would; documents are
  registered once whatever arrives twice).
- In order: a temporary refusal here stops the round at that message (it and those after it are
  tried next round). A permanent refusal is bounced to the sender from here (RFC 3464) and the
  message removed. A message not sealed by our upstream (mail sent straight to the pull account,
  forged envelope fields, sealed under a password since changed) is never delivered: it is logged
  and moved to the pull account's UNSEALED_FOLDER at the upstream (UID COPY, then removed from
  INBOX with its batch), so it is neither lost nor fetched again. A message larger than
  `[limits] max_message_size` is left upstream and logged every round.
- Memory: one batch at a time (PULL_BATCH_BYTES, or one message up to the size cap).
- One fetcher per upstream at a time across processes and nodes (mailboxes.leases, "pull:<upstream>").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from delivery.accept import Acceptor, Inbound
from delivery.pullroute import SealError, unseal
from delivery.submit import Client, Submitter, utcnow
from delivery.queue import node_id
from mailboxes.leases import Leases
from mailboxes.pulled import PullRecords

from .pullclient import PullError, Upstream, tls_context

log = logging.getLogger("postroom.pull")

PULL_BATCH_MESSAGES = 50  # messages fetched by one UID FETCH
PULL_BATCH_BYTES = 8 << 20  # bytes fetched by one UID FETCH (a larger message is fetched alone)
PULL_LEASE_SECONDS = 300.0  # renewed every third of it while a round runs; a fetcher that died frees its upstream after this
TLS_MODES = ("imaps", "starttls")
UNSEALED_FOLDER = "Unsealed"  # at the upstream: what its queue did not seal for us (never delivered, never lost)


@dataclass(frozen=True)
class PullConfig:
    host: str
    port: int
    account: str
    password: str = field(repr=False)
    tls: str = "imaps"
    ca_file: str = ""
    interval: int = 300
    timeout: float = 60.0
    max_size: int = 52428800

    @property
    def upstream(self) -> str:
        return f"{self.account.lower()}@{self.host.lower()}:{self.port}"


def pull_config(config) -> PullConfig | None:
    """The `[pull]` section (mailserver.config.Config), or None when pull mode is off."""
    upstream = config.get("pull", "upstream")
    if not upstream:
        return None
    host, _, port = upstream.rpartition(":")
    password = config.get("pull", "password")
    pw_file = config.get("pull", "password_file")
    if pw_file:
        p = Path(pw_file)
        if not p.is_absolute():
            p = config.data_dir / p
        password = p.read_text(encoding="utf-8").strip()
    ca = config.get("pull", "ca_file")
    if ca and not Path(ca).is_absolute():
        ca = str(config.data_dir / ca)
    return PullConfig(host.strip("[]"), int(port), config.get("pull", "account"), password,
                      tls=config.get("pull", "tls"), ca_file=ca, interval=config.get("pull", "interval"),
                      timeout=float(config.get("pull", "timeout")), max_size=config.get("limits", "max_message_size"))


@dataclass
class PullResult:
    """What one round did (the CLI prints it; tests read it)."""

    delivered: int = 0
    duplicates: int = 0  # delivered before; only removed upstream
    bounced: int = 0
    unsealed: int = 0
    oversize: int = 0
    removed: int = 0
    held: int = 0  # left for the next round after a temporary refusal here
    busy: bool = False  # another fetcher held the upstream


def _batches(listed, max_messages: int, max_bytes: int):
    batch, size = [], 0
    for item in listed:
        if batch and (len(batch) >= max_messages or size + item.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


class Fetcher:
    def __init__(self, cfg: PullConfig, records: PullRecords, leases: Leases, acceptor: Acceptor,
                 submitter: Submitter, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.cfg = cfg
        self.records = records
        self.leases = leases
        self._lease = f"pull:{cfg.upstream}"
        self.acceptor = acceptor
        self.submitter = submitter
        self.clock = clock
        self._ctx = tls_context(cfg.ca_file)
        self._holder = node_id()
        # Called after a batch is committed here and before it is removed upstream (tests cut the link there).
        self.after_commit: Callable[[list[int]], Awaitable[None]] | None = None

    async def fetch(self) -> PullResult:
        """One round; PullError when the link is down or drops (what was committed stays committed)."""
        result = PullResult()
        if not await self.leases.acquire(self._lease, self._holder, PULL_LEASE_SECONDS):
            result.busy = True
            return result
        keeper = asyncio.create_task(self._keep_lease())
        try:
            async with Upstream(self.cfg.host, self.cfg.port, tls=self.cfg.tls, ctx=self._ctx,
                                timeout=self.cfg.timeout) as up:
                await up.login(self.cfg.account, self.cfg.password)
                uidvalidity = await up.select("INBOX")
                uids = await up.uids()
                for i in range(0, len(uids), PULL_BATCH_MESSAGES):
                    listed = await up.sizes(uids[i:i + PULL_BATCH_MESSAGES])
                    big = [x for x in listed if x.size > self.cfg.max_size]
                    for x in big:
                        log.error("pull upstream=%s uid=%d: %d bytes is over [limits] max_message_size; left there",
                                  self.cfg.upstream, x.uid, x.size)
                    result.oversize += len(big)
                    for batch in _batches([x for x in listed if x.size <= self.cfg.max_size],
                                          PULL_BATCH_MESSAGES, PULL_BATCH_BYTES):
                        if not await self._batch(up, uidvalidity, [x.uid for x in batch], result):
                            return result
            await self.records.prune()
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self.leases.release(self._lease, self._holder)
        return result

    async def _keep_lease(self) -> None:
        """Renew the lease while the round runs (a batch over a dial-up line may take longer than the lease)."""
        while True:
            await asyncio.sleep(PULL_LEASE_SECONDS / 3)
            try:
                await self.leases.acquire(self._lease, self._holder, PULL_LEASE_SECONDS)
            except Exception:  # noqa: BLE001 - the database may be away for a moment; the next try may work
                log.exception("pull: renewing the lease failed")

    async def _batch(self, up: Upstream, uidvalidity: int, uids: list[int], result: PullResult) -> bool:
        """Fetch, deliver, record, then remove upstream; False when a temporary refusal stops the round."""
        bodies = await up.bodies(uids)
        done: list[int] = []
        aside: list[int] = []
        going = True
        for uid in uids:
            raw = bodies.get(uid)
            if raw is None:  # expunged meanwhile by someone else
                continue
            outcome = await self._one(uidvalidity, uid, raw, result, up.peer_ip)
            if outcome == "temp":
                result.held += 1
                going = False
                break
            done.append(uid)
            if outcome == "aside":
                aside.append(uid)
        if done:
            if self.after_commit is not None:
                await self.after_commit(done)
            if aside:
                await up.set_aside(aside, UNSEALED_FOLDER)
            await up.delete(done)
            result.removed += len(done)
        return going

    async def _one(self, uidvalidity: int, uid: int, raw: bytes, result: PullResult, peer: str) -> str:
        where = f"upstream={self.cfg.upstream} uidvalidity={uidvalidity} uid={uid}"
        try:
            sealed = unseal(self.cfg.password, raw)
        except SealError as exc:
            result.unsealed += 1
            log.error("pull %s not delivered, moved to %r at the upstream for an administrator: %s", where,
                      UNSEALED_FOLDER, exc)
            return "aside"
        if await self.records.seen(uidvalidity, uid, sealed.mac):
            result.duplicates += 1
            log.info("pull %s delivered before; removing it upstream", where)
            return "dup"
        client = Client(ip=peer, helo=self.cfg.host, protocol="IMAPS")  # TLS always (pullclient)
        out = await self.acceptor.accept(Inbound(sealed.mail_from, sealed.rcpts, sealed.data, client))
        if not out.accepted and out.reply.is_transient:
            log.warning("pull %s queue_id=%s refused for now: %s", where, out.queue_id,
                        str(out.reply).replace("\r\n", " "))
            return "temp"
        if not out.accepted:  # nobody here takes it: the sender hears from us, as from an SMTP hop
            await self.submitter.bounce(out.queue_id, sealed.mail_from, sealed.data,
                                        list(out.refused) or [(r, out.reply) for r in sealed.rcpts])
            result.bounced += 1
        else:
            result.delivered += 1
        await self.records.record(uidvalidity, uid, sealed.mac)
        log.info("pull %s queue_id=%s from=<%s> rcpts=%d result=%s", where, out.queue_id, sealed.mail_from,
                 len(sealed.rcpts), "delivered" if out.accepted else "bounced")
        return "ok"


def build(mb, config, delivery, *, clock: Callable[[], datetime] = utcnow) -> Fetcher | None:
    """The fetcher of this site's `[pull]` upstream, or None when pull mode is off."""
    cfg = pull_config(config)
    if cfg is None:
        return None
    records = PullRecords(mb.router.central, cfg.upstream, clock=clock)
    return Fetcher(cfg, records, Leases(mb.router.central, clock=clock), delivery.acceptor, delivery.submitter,
                   clock=clock)


class PullService:
    """`postroom serve`'s schedule: a round every `[pull] interval` seconds (and at start)."""

    name = "pull"

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.rounds = 0

    def poke(self) -> None:
        """Fetch now (the link just came up)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pull")

    async def _run(self) -> None:
        interval = self.fetcher.cfg.interval
        while True:
            self._wake.clear()
            try:
                r = await self.fetcher.fetch()
                if r.delivered or r.bounced or r.removed:
                    log.info("pull round: %s", r)
            except PullError as exc:
                log.warning("pull from %s failed: %s", self.fetcher.cfg.upstream, exc)
            except Exception:  # noqa: BLE001 - the database may be away for a moment; the next round tries again
                log.exception("pull round failed")
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval if interval > 0 else None):
                    await self._wake.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def start(ctx) -> list:
    """Started after delivery by `postroom serve` when `[pull] upstream` is set."""
    fetcher = build(ctx.mailboxes, ctx.config, ctx.extras["delivery"], clock=ctx.extras.get("clock", utcnow))
    if fetcher is None:
        return []
    svc = PullService(fetcher)
    ctx.extras["pull"] = svc
    await svc.start()
    log.info("pull mode: fetching from %s every %d s", fetcher.cfg.upstream, fetcher.cfg.interval)
    return [svc]
