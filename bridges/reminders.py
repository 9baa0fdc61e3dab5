"""Urgent-document reminders: a 特急 or 加急 document not signed for by a recipient organisation within the configured time raises one reminder mail to its sender (and a document.overdue webhook callback).

Implementation notes
- `Documents.claim_reminders` sets `reminded_at` on each overdue recipient row in one write
  transaction (the webhook callback recorded in it too), so a reminder is claimed once, ever,
  whichever of several nodes looks first; the mail goes after the commit, one per document
  naming its overdue organisations. A crash between the commit and the mail loses that mail
  (at most once: a reminder repeated every minute would be worse than one missed).
- The service looks every POLL_SECONDS; time comes from the clock passed in (tests move it).
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from delivery.submit import Outcome, Submission
from mailboxes.documents import Documents, Tracking

log = logging.getLogger("postroom.documents.reminders")

POLL_SECONDS = 60.0  # how often overdue urgent documents are looked for
BATCH = 100  # recipient rows claimed per round


class Reminders:
    name = "reminders"  # in `postroom serving: ...`

    def __init__(self, documents: Documents, submit: Callable[[Submission], Awaitable[Outcome]], *,
                 after: dict[str, timedelta], hostname: str) -> None:
        self.documents = documents
        self.submit = submit
        self.after = {u: w for u, w in after.items() if w > timedelta(0)}
        self.hostname = hostname
        self._task: asyncio.Task | None = None

    async def run_once(self) -> int:
        """Claim what is overdue and mail each document's sender once; how many recipient rows were claimed."""
        if not self.after:
            return 0
        claimed = await self.documents.claim_reminders(self.after, limit=BATCH)
        by_doc: dict[int, list[Tracking]] = {}
        senders: dict[int, str] = {}
        for tr, sender in claimed:
            by_doc.setdefault(tr.document_id, []).append(tr)
            senders[tr.document_id] = sender
        for doc_id, rows in by_doc.items():
            await self._mail(senders[doc_id], rows)
        return len(claimed)

    async def _mail(self, sender: str, rows: list[Tracking]) -> None:
        first, now = rows[0], self.documents.clock()
        wait = self.after[first.urgency]
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = sender
        msg["To"] = sender
        msg["Subject"] = f"[{first.urgency}] 催办提醒 Not signed for: {first.title}（{first.number}）"
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid(domain=self.hostname)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office answers
        hours = wait.total_seconds() / 3600
        lines = [f"  {r.org}: {_state_zh(r)}（{r.state}）" for r in rows]
        msg.set_content(f"{first.urgency}公文《{first.title}》（{first.number}）发出已超过 {hours:g} 小时，"
                        f"以下单位尚未签收：\nThese organisations have not signed for the {first.urgency} document "
                        f"{first.number} within {hours:g} h:\n" + "\n".join(lines)
                        + f"\n\npostroom dispatch status \"{first.number}\"\n")
        out = await self.submit(Submission(mail_from=sender, recipients=(sender,), data=msg.as_bytes(),
                                           origin="bridge"))
        log.info("reminder number=%s orgs=%s to=%s accepted=%s", first.number, ",".join(r.org for r in rows), sender,
                 out.accepted)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="documents-reminders")

    async def _loop(self) -> None:
        while True:
            try:
                while await self.run_once() >= BATCH:
                    await asyncio.sleep(0)
            except Exception:  # a store hiccup: logged, tried again next round
                log.exception("reminder round failed")
            await asyncio.sleep(POLL_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _state_zh(r: Tracking) -> str:
    return {"queued": "待发送", "sent": "已发出", "failed": "发送失败", "delivered": "已送达",
            "registered": "已登记"}.get(r.state, r.state)


def thresholds(config) -> dict[str, timedelta]:
    """{urgency: time} from [documents] remind_urgent_after (特急) and remind_expedited_after (加急)."""
    return {"特急": timedelta(seconds=config.get("documents", "remind_urgent_after")),
            "加急": timedelta(seconds=config.get("documents", "remind_expedited_after"))}



