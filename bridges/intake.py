"""The documents mailbox's intake: documents from partners verified, registered, filed and receipted; receipts fed to the tracker; the rest quarantined.

Implementation notes
- Document messages and receipts arrive as ordinary mail in the INBOX of this site's documents
  account ([documents] address), so they are durable (250 after commit) before anything here
  runs. The intake takes them oldest first; each is registered (idempotent), receipted, then
  moved out of the INBOX, so the INBOX holds exactly what is left to do. A crash anywhere in
  between repeats the message: registration finds the first registration, the city's tracker
  ignores a repeated receipt. Nothing is ever registered twice.
- Trust comes from DKIM only (delivery's verifier: trusted partner keys, then DNS), never from
  From or Subject: a message is from partner P when a signature with d= P's domain passes.
  A document must also name this site's organisation among its recipients; a receipt may only
  speak for the organisation that signed it.
- Forged, unsigned, non-partner and malformed messages are kept whole in the quarantine table
  for an administrator and removed from the INBOX; the sender gets no answer at all.
- Per message the work is bounded (MIME parts, manifest size, files checked by hash); parsing and
  DKIM of large messages run off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from delivery.dkim import DkimResult
from delivery.submit import Outcome, Submission
from mailboxes.acl import set_rights
from mailboxes.documents import INCOMING, RECEIPTS, Documents, Partner, Registration
from mailboxes.errors import NotFound
from mailboxes.model import Account
from mailboxes.leases import Leases
from mailboxes.offload import offload_if_large
from mailboxes.service import Mailboxes

from .docmail import MAX_PARTS, read_document, read_receipt, receipt_message
from .manifest import MEDIA_TYPE, RECEIPT_MEDIA_TYPE, ManifestError, Receipt, parse_number

log = logging.getLogger("postroom.intake")

BATCH = 20  # messages taken from the INBOX per round (then the loop yields to others)
SWEEP_SECONDS = 60.0  # a look at the INBOX even without a change event (events of other nodes, missed ones)
LEASE = "documents-intake"  # one intake per site: worker processes and nodes share the documents account
LEASE_SECONDS = 30.0  # a holder that stops renewing is replaced this long after its last round
RENEW_SECONDS = 10.0  # rounds when leased: the holder renews, the others look whether it is free
REGISTRAR_RIGHTS = "lrsw"  # RFC 4314: see, read, mark seen, set flags (not delete: the register stays whole)

Verify = Callable[[bytes], Awaitable[tuple[DkimResult, ...]]]
Submit = Callable[[Submission], Awaitable[Outcome]]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class IntakeConfig:
    org: str  # this site's organisation code (as partners name it)
    address: str  # the documents account
    registrars: tuple[str, ...] = ()
    hostname: str = "localhost"


def _kind(raw: bytes) -> str | None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    types = {p.get_content_type() for p in itertools.islice(msg.walk(), MAX_PARTS)}
    if MEDIA_TYPE in types:
        return "document"
    if RECEIPT_MEDIA_TYPE in types:
        return "receipt"
    return None


class Intake:
    name = "documents"  # in `postroom serving: ...`

    def __init__(self, mb: Mailboxes, documents: Documents, verify: Verify, submit: Submit, cfg: IntakeConfig,
                 *, clock: Callable[[], datetime] = _utcnow, leases: Leases | None = None, holder: str = "") -> None:
        """`leases`/`holder`: when several processes or nodes start an intake for one site, only the lease's
        holder handles the INBOX (without it each would send its own receipts); None: this one always does."""
        self.mb = mb
        self.documents = documents
        self.verify = verify
        self.submit = submit
        self.cfg = cfg
        self.clock = clock
        self._task: asyncio.Task | None = None
        self.leases = leases
        self.holder = holder
        self.holding = leases is None

    async def _account(self) -> Account:
        return await self.mb.directory.account(self.cfg.address)

    async def setup(self) -> None:
        """The documents account's folders, and the registrars' rights on the incoming one."""
        acct = await self._account()
        have = {f.name for f in await self.mb.store.folders(acct)}
        for name in (INCOMING, RECEIPTS):
            if name not in have:
                await self.mb.store.create_folder(acct, name)
        incoming = await self.mb.store.folder(acct, INCOMING)
        for who in self.cfg.registrars:
            await set_rights(self.mb.store, incoming, who, REGISTRAR_RIGHTS)

    async def run_once(self) -> int:
        """Handle up to BATCH messages waiting in the INBOX, oldest first; how many were handled."""
        acct = await self._account()
        inbox = await self.mb.store.folder(acct, "INBOX")
        metas = await self.mb.store.message_page(inbox.ref, offset=0, limit=BATCH, newest_first=False)
        if not metas:
            return 0
        raws = await self.mb.store.raw_many(inbox.ref.partition, [m.blob_id for m in metas])
        for m in metas:
            dest = await self.handle(raws[m.blob_id])
            if dest is None:
                await self.mb.store.expunge(inbox.ref, [m.uid], deleted_only=False)
            else:
                await self.mb.store.move(acct, inbox.ref, [m.uid], (await self.mb.store.folder(acct, dest)).ref)
        return len(metas)

    async def handle(self, raw: bytes) -> str | None:
        """Do what one message asks; the folder to file it in, or None when it was quarantined."""
        kind = await offload_if_large(len(raw), _kind, raw)
        results = await self.verify(raw)
        passed = {r.domain.lower() for r in results if r.result == "pass" and r.domain}
        partner = None
        for domain in sorted(passed):
            with contextlib.suppress(NotFound):
                partner = await self.documents.partner(domain=domain)
                break
        if kind is None:
            return await self._quarantine(raw, "not a document or a receipt")
        if partner is None:
            why = ", ".join(f"dkim={r.result}" + (f" d={r.domain}" if r.domain else "") for r in results)
            return await self._quarantine(raw, f"no passing DKIM signature of a partner organisation ({why})")
        try:
            if kind == "document":
                return await self._document(raw, partner)
            return await self._receipt(raw, partner)
        except ManifestError as exc:
            return await self._quarantine(raw, f"from {partner.org}: {exc}")

    async def _quarantine(self, raw: bytes, reason: str) -> None:
        head = email.message_from_bytes(raw[:64 * 1024], policy=email.policy.compat32)
        sender = str(head.get("From", ""))[:320]
        qid = await self.documents.quarantine(sender=sender, reason=reason, raw=raw)
        log.warning("intake quarantined id=%d from=%r reason=%s", qid, sender, reason)
        return None

    async def _document(self, raw: bytes, partner: Partner) -> str:
        got = await offload_if_large(len(raw), read_document, raw)
        doc = got.document
        if self.cfg.org not in doc.recipients:
            raise ManifestError("main_recipients", f"{self.cfg.org} is not among the recipients")
        reg, new = await self.documents.register(
            partner_org=partner.org, issuing_organ=doc.issuing_organ[0], number=str(doc.document_number),
            title=doc.title, urgency=doc.urgency, manifest=doc.to_json().decode(), message_id=got.message_id)
        log.info("intake document number=%s from=%s registration=%s new=%s", reg.number, partner.org,
                 reg.registration_number, new)
        if new:
            await self._notify_registrars(reg)
        # Receipts are sent again when a document repeats: the first ones may be what was lost.
        for kind in ("delivered", "registered"):
            await self._send_receipt(partner, reg, kind, in_reply_to=got.message_id)
        return INCOMING

    async def _receipt(self, raw: bytes, partner: Partner) -> str:
        r = await offload_if_large(len(raw), read_receipt, raw)
        if r.recipient != partner.org:
            raise ManifestError("recipient", f"{partner.org} cannot report for {r.recipient}")
        try:
            new = await self.documents.track(str(r.document_number), partner.org, r.kind, at=r.at,
                                             registration_number=r.registration_number, signed_by=r.by,
                                             issuing_organ=r.issuing_organ)
            if r.kind in ("registered", "signed"):  # a later step implies the earlier ones
                await self.documents.track(str(r.document_number), partner.org, "delivered", at=r.at,
                                           issuing_organ=r.issuing_organ)
        except NotFound:
            raise ManifestError("document_number", f"no dispatched document {r.document_number}") from None
        log.info("intake receipt number=%s from=%s kind=%s new=%s", r.document_number, partner.org, r.kind, new)
        return RECEIPTS

    async def _send_receipt(self, partner: Partner, reg: Registration, kind: str, *, in_reply_to: str = "") -> None:
        receipt = Receipt(kind, parse_number(reg.number), reg.issuing_organ, self.cfg.org, self.clock(),
                          registration_number=reg.registration_number if kind != "delivered" else "",
                          by=reg.signed_by if kind == "signed" else "")
        data = receipt_message(receipt, sender=self.cfg.address, to=partner.address, now=self.clock(),
                               hostname=self.cfg.hostname, in_reply_to=in_reply_to or reg.message_id)
        out = await self.submit(Submission(mail_from=self.cfg.address, recipients=(partner.address,), data=data,
                                           origin="bridge"))
        if not out.accepted:
            log.error("intake receipt kind=%s number=%s to=%s refused: %s", kind, reg.number, partner.address,
                      out.reply.text)

    async def _notify_registrars(self, reg: Registration) -> None:
        if not self.cfg.registrars:
            return
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.cfg.address
        msg["To"] = ", ".join(self.cfg.registrars)
        tag = f"[{reg.urgency}] " if reg.urgency else ""
        msg["Subject"] = f"{tag}新收文 New document: {reg.title}（{reg.number}）"
        msg["Date"] = format_datetime(self.clock())
        msg["Message-ID"] = make_msgid(domain=self.cfg.hostname)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office answers
        msg.set_content(f"收文编号 Registration: {reg.registration_number}\n发文字号 Number: {reg.number}\n"
                        f"来文单位 From: {reg.partner_org} / {reg.issuing_organ}\n标题 Title: {reg.title}\n\n"
                        f"请在“{INCOMING}”文件夹查看并签收：postroom dispatch sign \"{reg.registration_number}\" --by 姓名\n"
                        f"Read it in the shared folder {INCOMING} and sign for it.\n")
        out = await self.submit(Submission(mail_from=self.cfg.address, recipients=self.cfg.registrars,
                                           data=msg.as_bytes(), origin="bridge"))
        if not out.accepted:
            log.error("intake notify registration=%s refused: %s", reg.registration_number, out.reply.text)

    async def sign(self, registration_number: str, by: str) -> tuple[Registration, bool]:
        """签收: record who signed for it and send the sign-for receipt to the issuing partner."""
        reg, new = await self.documents.sign(registration_number, by)
        if new:
            partner = await self.documents.partner(reg.partner_org)
            await self._send_receipt(partner, reg, "signed")
            log.info("intake signed registration=%s by=%s", registration_number, by)
        return reg, new

    # --- the running service -----------------------------------------------------------------
    async def start(self) -> None:
        await self.setup()
        acct = await self._account()
        inbox = await self.mb.store.folder(acct, "INBOX")
        listener = self.mb.store.bus.listen(inbox.ref)
        self._task = asyncio.create_task(self._loop(listener), name="documents-intake")

    async def _loop(self, listener) -> None:
        try:
            while True:
                try:
                    if await self._hold():
                        while await self.run_once():
                            await asyncio.sleep(0)
                except Exception:  # a store hiccup: logged, tried again at the next event or sweep
                    log.exception("intake round failed")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SWEEP_SECONDS if self.leases is None else RENEW_SECONDS):
                        await listener.get()
        finally:
            listener.close()

    async def _hold(self) -> bool:
        """Take or renew the lease; whether this intake is the one that handles the INBOX now."""
        if self.leases is None:
            return True
        holding = await self.leases.acquire(LEASE, self.holder, LEASE_SECONDS)
        if holding != self.holding:
            log.info("intake lease %s holder=%s", "taken" if holding else "lost", self.holder)
        self.holding = holding
        return holding

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.leases is not None and self.holding:
            with contextlib.suppress(Exception):  # the store may be closing too: the lease then just expires
                await self.leases.release(LEASE, self.holder)
            self.holding = False
