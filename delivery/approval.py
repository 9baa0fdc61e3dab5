"""Approval of held mail: the request to approvers, approve (release through the queue) and reject (return to sender)."""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from email.utils import format_datetime, make_msgid

from mailboxes.errors import NotFound
from mailboxes.held import APPROVED, REJECTED, Held
from mailboxes.model import Account

from .dsn import RecipientStatus
from .labels import HEADER, Label
from .queue import NewEntry, new_queue_id
from .submit import Submitter, header_from_domain

log = logging.getLogger("postroom.approval")

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


class Approvals:
    """Decisions on held mail, taken only by the approvers (members of the configured office group)."""

    def __init__(self, submitter: Submitter) -> None:
        self.submitter = submitter
        self.held = submitter.held

    async def is_approver(self, account: Account) -> bool:
        if not self.submitter.approvers:
            return False
        res = await self.submitter.mb.directory.resolve(self.submitter.approvers)
        return res is not None and any(a.id == account.id for a in res.local)

    async def pending(self, account: Account) -> list[Held]:
        return await self.held.pending() if await self.is_approver(account) else []

    async def view(self, held_id: int, account: Account) -> tuple[Held, bytes]:
        """The held message for an approver; NotFound for anyone else (ids are not trusted)."""
        if not await self.is_approver(account):
            raise NotFound(f"no held message {held_id}")
        return await self.held.get(held_id), await self.held.data(held_id)

    async def approve(self, held_id: int, account: Account) -> Held:
        """Release to exactly the held recipients, signed, through the queue; audited."""
        await self.view(held_id, account)
        held = await self.held.decide(held_id, APPROVED, account.address)
        data = await self.held.data(held_id)
        qid = new_queue_id()
        signed = await self.submitter._signed(data, header_from_domain(data))
        await self.submitter.queue.enqueue(NewEntry(qid, held.mail_from, held.recipients, signed, "released",
                                                    held.submitter))
        audit = self.submitter.mb.directory.audit
        await audit(account.address, "approved", held.queue_id, held_id=held_id, recipients=list(held.recipients))
        await audit(account.address, "released", qid, held_id=held_id, recipients=list(held.recipients))
        log.info("approved held_id=%d by=%s released queue_id=%s rcpts=%d", held_id, account.address, qid,
                 len(held.recipients))
        return held

    async def reject(self, held_id: int, account: Account, reason: str) -> Held:
        """Return the message to its sender with the reason (a DSN, RFC 3464); audited."""
        await self.view(held_id, account)
        held = await self.held.decide(held_id, REJECTED, account.address, reason)
        data = await self.held.data(held_id)
        why = " ".join(reason.split())[:200] or "-"
        now = self.submitter.clock()
        said = f"550 {NOT_APPROVED} 未获批准 Not approved by {account.address}: {why}"  # the reason may be Chinese
        await self.submitter.bounce(held.queue_id, held.mail_from, data, [
            RecipientStatus(r, "failed", NOT_APPROVED, diagnostic=said, remote_mta=self.submitter.hostname,
                            last_attempt=now) for r in held.recipients])
        await self.submitter.mb.directory.audit(account.address, "rejected", held.queue_id, held_id=held_id,
                                                reason=why, recipients=list(held.recipients))
        log.info("rejected held_id=%d by=%s", held_id, account.address)
        return held
