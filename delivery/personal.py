"""The local-delivery hook for per-account settings: each copy filed by its account's rules, then out-of-office replies.

Implementation notes
- Accounts with nothing set cost nothing: `MailSettings.active()` is a cached
  set of ids, and when no recipient is in it the message is written exactly as
  before (one Store.deliver, every copy into INBOX).
- Copies with the same flags share one Delivery; several are written
  concurrently, so the group committer still batches them.
- A rule's folder that is gone (deleted, or never valid) does not lose the
  copy: it is written to INBOX and the fall-back is logged.
- Auto-replies are decided and submitted (through the one submit() path, durable when it returns)
  before the copies are written, so no crash loses one: a crash after the reply and before the
  copies' commit leaves the message unacknowledged, the client sends it again, and the
  once-per-sender-per-period record (claimed with the reply) keeps the second delivery from
  replying again. (They were sent from tasks after the commit, and a crash in between lost the
  reply.) The price: a reply also goes out when the copy then cannot be written (the sender gets
  the refusal too), and the delivery waits for the reply's submission, which happens once per
  sender per period. A failing reply never fails the delivery (it is logged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from mailboxes.blobs import PreparedMessage
from mailboxes.errors import OverQuota
from mailboxes.mailsettings import DeliverySettings
from mailboxes.model import Account, AppendResult
from mailboxes.service import Mailboxes
from mailboxes.store import INBOX, Delivery

from .autoreply import Head, Placement, build_reply, no_reply_reason, place, read_head

log = logging.getLogger("postroom.personal")

Send = Callable[[str, bytes], Awaitable[object]]  # (recipient, message) through submit() from <>


class PersonalDelivery:
    def __init__(self, mb: Mailboxes, *, clock: Callable[[], datetime], hostname: str, send: Send) -> None:
        self.mb = mb
        self.clock = clock
        self.hostname = hostname
        self.send = send

    async def write(self, prepared: PreparedMessage, accounts: list[Account], *, mail_from: str,
                    queue_id: str, tracks: dict[int, int] | None = None) -> list[AppendResult | Exception]:
        """Write each account's copy (durable when this returns): per account its AppendResult or the refusal.

        ``tracks``: account id -> its read-status copy id (mailboxes/readstatus.py), carried by the
        copy into whatever folder a rule chooses.
        """
        tracks = tracks or {}
        active = await self.mb.settings.active()
        special = [a for a in accounts if a.id in active]
        if not special:
            result = await self.mb.store.deliver(Delivery(
                prepared, tuple((a, INBOX) for a in accounts),
                tracks=tuple(tracks.get(a.id) for a in accounts) if tracks else ()))
            return list(result.results)
        settings = await self.mb.settings.for_delivery(special)
        head = read_head(prepared.raw)
        for a in accounts:  # before the copies: durable before anything is acknowledged (module notes)
            if a.id in settings:
                await self._answer(a, settings[a.id], head, mail_from, queue_id)
        placements = [place(settings[a.id].rules, head) if a.id in settings else Placement() for a in accounts]
        results = await self._write(prepared, accounts, placements, tracks)
        fallback = [i for i, (r, p) in enumerate(zip(results, placements))
                    if isinstance(r, Exception) and not isinstance(r, OverQuota) and p.folder != INBOX]
        for i in fallback:
            log.warning("rule folder queue_id=%s account=%s folder=%r unusable (%s): delivered to INBOX",
                        queue_id, accounts[i].address, placements[i].folder, results[i])
        if fallback:
            again = await self._write(prepared, [accounts[i] for i in fallback],
                                      [Placement(INBOX, placements[i].flags, placements[i].keywords) for i in fallback],
                                      tracks)
            for i, r in zip(fallback, again):
                results[i] = r
        return results

    async def _write(self, prepared: PreparedMessage, accounts: list[Account],
                     placements: list[Placement], tracks: dict[int, int]) -> list[AppendResult | Exception]:
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, p in enumerate(placements):
            groups.setdefault((p.flags, p.keywords), []).append(i)
        jobs = [self.mb.store.deliver(Delivery(prepared, tuple((accounts[i], placements[i].folder) for i in idxs),
                                               flags, keywords,
                                               tracks=tuple(tracks.get(accounts[i].id) for i in idxs) if tracks else ()))
                for (flags, keywords), idxs in groups.items()]
        results: list[AppendResult | Exception] = [None] * len(accounts)  # type: ignore[list-item]
        for idxs, out in zip(groups.values(), await asyncio.gather(*jobs)):
            for i, r in zip(idxs, out.results):
                results[i] = r
        return results

    # --- out of office (RFC 3834) ----------------------------------------------------------

    async def _answer(self, account: Account, ds: DeliverySettings, head: Head, mail_from: str,
                      queue_id: str) -> None:
        now = self.clock()
        if not ds.ooo.active_at(now):
            return
        why = no_reply_reason(mail_from, head, ds)
        if why is not None:
            log.info("autoreply queue_id=%s account=%s to=<%s> skipped: %s", queue_id, account.address, mail_from, why)
            return
        await self._reply(account, ds, head, mail_from, queue_id, now)

    async def _reply(self, account: Account, ds: DeliverySettings, head: Head, to: str, queue_id: str,
                     now: datetime) -> None:
        try:
            if not await self.mb.settings.claim_reply(account.id, to, ds.ooo.days, now):
                log.info("autoreply queue_id=%s account=%s to=<%s> skipped: replied within %d days", queue_id,
                         account.address, to, ds.ooo.days)
                return
            data = build_reply(account_address=account.address, display_name=account.display_name, to=to,
                               subject=ds.ooo.subject, body=ds.ooo.body, head=head, hostname=self.hostname, now=now)
            out = await self.send(to, data)
            log.info("autoreply queue_id=%s account=%s to=<%s> sent: %s", queue_id, account.address, to,
                     getattr(out, "queue_id", "-"))
        except Exception:  # never the delivery's failure: it is committed already
            log.exception("autoreply queue_id=%s account=%s to=<%s> failed", queue_id, account.address, to)

    async def settle(self) -> None:
        """Nothing to wait for: a reply is submitted before its delivery returns (kept for callers)."""
