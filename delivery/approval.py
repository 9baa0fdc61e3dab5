"""Approval of held mail: the request to approvers, approve (release through the queue) and reject (return to sender)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

from mailboxes.errors import InvalidInput, NotFound
from mailboxes.held import APPROVED, PENDING, REJECTED, Held
from mailboxes.leaders import leader_for, leads
from mailboxes.model import Account

from .dsn import RecipientStatus
from .labels import HEADER, Label
from .queue import NewEntry, new_queue_id
from .submit import Submitter, header_from_domain

log = logging.getLogger("postroom.approval")

REROUTE_SECONDS = 60.0  # how often pending holds are matched against today's leaders (Rerouter)

NOT_APPROVED = "5.7.1"  # RFC 3463: delivery not authorized, message refused


def request_message(*, hostname: str, held_id: int, label: Label, sender: str, recipients: list[str],
                    original: bytes, now: datetime) -> bytes:
    """The approval request: what is held and for whom, with the message itself attached (message/rfc822)."""
    boundary = f"=_approval_{held_id}_{int(now.timestamp())}"
    text = (f"{sender} 发送的邮件（密级：{label.zh}）需审批后才能发往：\r\n"
            f"A message from {sender} labelled {label.en} needs approval before it goes to:\r\n\r\n"
            + "".join(f"  {r}\r\n" for r in recipients)
            + f"\r\n网页邮箱 → 待审批邮件 / Webmail → Approvals: /approvals/{held_id}\r\n")
    head = (f"From: postmaster@{hostname}\r\n"
            f"Subject: =?utf-8?b?{base64.b64encode(f'待审批 Approval needed #{held_id}'.encode()).decode()}?=\r\n"
            f"Date: {format_datetime(now)}\r\n"
            f"Message-ID: {make_msgid(domain=hostname)}\r\n"
            "Auto-Submitted: auto-generated\r\n"  # RFC 3834 §5: no out-of-office reply to it
            f"{HEADER}: {label.zh}\r\n"  # the request shows the message: it carries the message's label
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n')
    # RFC 2046 §5.2.1: message/rfc822 is never base64; the held message is attached as it is (8bit).
    return (head + f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n--{boundary}\r\n"
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n"
            "Content-Disposition: inline\r\n\r\n").encode("utf-8") + original.rstrip(b"\r\n") + \
        f"\r\n--{boundary}--\r\n".encode("ascii")


@dataclass(frozen=True)
class Administrator:
    """A decision taken with the server's own authority (the `postroom approvals` CLI), named by its actor."""

    actor: str

    @property
    def address(self) -> str:
        return self.actor


Decider = Account | Administrator


class Approvals:
    """Decisions on held mail: by the leader asked (mailboxes.leaders), by the office, or by an administrator.

    Who may decide a held message (issue 13): the office (members of the configured approvers'
    group) decides any; a leader decides those whose sender they lead now (leader_for over
    today's tree: when a department's leader changes or is cleared, or the sender moves, what
    waits goes to the new leader, not only what is held after); nobody decides their own mail.
    `Held.approver` keeps who was asked at the time. The CLI decides as an administrator
    (`actor`) through the same release and return path.
    """

    def __init__(self, submitter: Submitter) -> None:
        self.submitter = submitter
        self.held = submitter.held

    async def is_office(self, account: Account, *, cached: bool = False) -> bool:
        if not self.submitter.approvers:
            return False
        resolve = self.submitter.directory.resolve if cached else self.submitter.mb.directory.resolve
        try:
            res = await resolve(self.submitter.approvers)
        except (NotFound, InvalidInput):
            return False
        return res is not None and any(a.id == account.id for a in res.local)

    async def leads(self, account: Account, *, cached: bool = False) -> bool:
        d = self.submitter.directory
        return leads(await (d.leader_tree() if cached else d.leaders.tree()), account.address)

    async def is_approver(self, account: Account) -> bool:
        return await self.is_office(account) or await self.leads(account)

    async def pending(self, account: Account) -> list[Held]:
        """What this account may decide, oldest first (none of its own)."""
        if await self.is_office(account):
            return await self.held.pending(not_from=account.address)
        led = await self._led_by(account)
        return await self.held.pending(ids=led, not_from=account.address) if led else []

    async def badge(self, account: Account) -> int | None:
        """For the navigation: None for someone who approves nothing, else how many wait (directory cached)."""
        if await self.is_office(account, cached=True):
            return await self.held.count_pending(not_from=account.address)
        led = await self._led_by(account, cached=True)
        return None if led is None else len(led)

    async def _led_by(self, account: Account, *, cached: bool = False) -> list[int] | None:
        """The pending holds whose sender this account leads now (None: it leads no department)."""
        d = self.submitter.directory
        tree = await (d.leader_tree() if cached else d.leaders.tree())
        me = account.address
        if not leads(tree, me):
            return None
        return [i for i, sender, dept, _ in await self.held.routes()
                if sender.lower() != me and leader_for(tree, dept, sender) == me]

    async def view(self, held_id: int, who: Decider) -> tuple[Held, bytes]:
        """The held message for one who may decide it (an administrator sees all); NotFound for anyone else."""
        held = await self.held.get(held_id)
        if not isinstance(who, Administrator) and not await self._may_decide(held, who):
            raise NotFound(f"no held message {held_id}")
        return held, await self.held.data(held_id)

    async def _may_decide(self, held: Held, account: Account) -> bool:
        if held.sender.lower() == account.address:
            return False
        if held.state == PENDING:
            if held.id in (await self._led_by(account) or ()):
                return True
        elif held.approver == account.address and await self.leads(account):
            return True  # a decision taken already, seen by the leader who was asked (a second click)
        return await self.is_office(account)

    async def reroute(self) -> int:
        """Ask the leader of now about each pending hold whose leader changed since it was asked.

        A leader set or cleared (here, by the CLI or on another node) or a sender moved: the hold is
        theirs to decide at once (`_led_by`), and here they are also sent the request by mail, as the
        first leader was. The hold's `approver` is changed first, where it still names who was asked:
        of nodes doing this together one sends the request (a crash between the two leaves the new
        leader with the hold in /approvals and the badge, unmailed). How many were sent on.
        """
        tree = await self.submitter.directory.leaders.tree()
        moved = 0
        for held_id, sender, dept, asked in await self.held.routes():
            now = leader_for(tree, dept, sender)
            if now == asked or not await self.held.reroute(held_id, asked, now):
                continue
            held = await self.held.get(held_id)
            label = self.submitter.labels.find(held.label) if self.submitter.labels is not None else None
            if label is None:  # the label was taken out of the configuration: the office sees it in /approvals
                log.warning("held_id=%d: label %r no longer configured; no request mailed", held_id, held.label)
                continue
            await self.submitter.mb.directory.audit(held.sender or "-", "held.rerouted", held.queue_id,
                                                    held_id=held_id, asked=asked or "office", now=now or "office")
            log.info("held_id=%d rerouted from=%s to=%s", held_id, asked or "office", now or "office")
            await self.submitter.ask_approval(held_id, label, held.sender, list(held.recipients),
                                              await self.held.data(held_id), now)
            moved += 1
        return moved

    async def approve(self, held_id: int, who: Decider) -> Held:
        """Release to exactly the held recipients, signed, through the queue; audited."""
        await self.view(held_id, who)
        by = who.address
        held = await self.held.decide(held_id, APPROVED, by)
        data = await self.held.data(held_id)
        qid = new_queue_id()
        signed = await self.submitter._signed(data, header_from_domain(data))
        await self.submitter.queue.enqueue(NewEntry(qid, held.mail_from, held.recipients, signed, "released",
                                                    held.submitter))
        audit = self.submitter.mb.directory.audit
        await audit(by, "approved", held.queue_id, held_id=held_id, recipients=list(held.recipients))
        await audit(by, "released", qid, held_id=held_id, recipients=list(held.recipients))
        log.info("approved held_id=%d by=%s released queue_id=%s rcpts=%d", held_id, by, qid,
                 len(held.recipients))
        return held

    async def reject(self, held_id: int, who: Decider, reason: str) -> Held:
        """Return the message to its sender with the reason (a DSN, RFC 3464); audited."""
        await self.view(held_id, who)
        by = who.address
        held = await self.held.decide(held_id, REJECTED, by, reason)
        data = await self.held.data(held_id)
        why = " ".join(reason.split())[:200] or "-"
        now = self.submitter.clock()
        said = f"550 {NOT_APPROVED} 未获批准 Not approved by {by}: {why}"  # the reason may be Chinese
        await self.submitter.bounce(held.queue_id, held.mail_from, data, [
            RecipientStatus(r, "failed", NOT_APPROVED, diagnostic=said, remote_mta=self.submitter.hostname,
                            last_attempt=now) for r in held.recipients])
        await self.submitter.mb.directory.audit(by, "rejected", held.queue_id, held_id=held_id,
                                                reason=why, recipients=list(held.recipients))
        log.info("rejected held_id=%d by=%s", held_id, by)
        return held


class Rerouter:
    """The running service: `Approvals.reroute` every REROUTE_SECONDS (leaders change anywhere: the CLI,
    another node), and at once when poked (a leader set through this process: the console)."""

    name = "approvals"

    def __init__(self, approvals: Approvals, every: float = REROUTE_SECONDS) -> None:
        self.approvals = approvals
        self.every = every
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.rounds = 0  # rounds done (tests wait for the next)
        self.sent_on = 0  # requests mailed to a new leader so far

    def poke(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="approvals-rerouter")

    async def _run(self) -> None:
        while True:
            try:
                self.sent_on += await self.approvals.reroute()
            except Exception:  # noqa: BLE001 - the database away for a moment: the next round tries again
                log.exception("rerouting held mail failed")
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self._wake.wait()
            self._wake.clear()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
