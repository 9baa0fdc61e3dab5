"""The admin console's audit log page (role admin only): search, keyset paging, CSV export and chain verification.

Department admins get 403 here, as users do: entries name accounts of every department
(logins, sends, shared reads, other admins' actions) and the chain is verified as a whole,
so there is no department-sized slice of it to show. Every view, export and verification
is itself an audit entry (audit.view, audit.export, audit.verify). The search filters are
the CLI's (`postroom audit search`) through the one query, mailboxes.auditlog.query.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from mailboxes import auditlog
from .. import i18n
from ..context import LOCALE, WEBMAIL
from .admin_queue import _admin

PAGE = 50  # entries per page
EXPORT_BATCH = 1000  # rows read per transaction while streaming the CSV (no transaction spans a network write)
MAX_FILTER_CHARS = 512  # a filter value (the widest column it matches: target)
MAX_SEQ_DIGITS = 18
DETAIL_SHOWN = 400  # characters of an entry's detail on the page (the CSV has all of it)
VERIFY_MIN_INTERVAL = timedelta(seconds=60)  # a verification starts at most this often; meanwhile the last is shown
FILTERS = ("actor", "action", "target", "text", "since", "until")


@dataclass(frozen=True)
class Verification:
    at: datetime
    by: str
    entries: int
    anchors: int
    problem: auditlog.Problem | None


class Verifier:
    """One chain verification at a time per process, at most once per VERIFY_MIN_INTERVAL.

    A request while one runs waits for that one (it is not started twice); a request soon after
    gets the last result with its time. The walk itself is auditlog.verify_off_loop: short read
    transactions, hashing in a worker thread, a pause between batches."""

    def __init__(self, db, anchor_path: Path | None, clock) -> None:
        self.db, self.anchor_path, self.clock = db, anchor_path, clock
        self.last: Verification | None = None
        self._task: asyncio.Task | None = None

    async def run(self, by: str) -> tuple[Verification, bool]:
        """(the result, whether this request started the verification)."""
        started = False
        if self._task is None or self._task.done():
            if self.last is not None and self.clock() - self.last.at < VERIFY_MIN_INTERVAL:
                return self.last, False
            self._task = asyncio.get_running_loop().create_task(self._verify(by))
            started = True
        return await asyncio.shield(self._task), started

    async def _verify(self, by: str) -> Verification:
        anchors = await asyncio.to_thread(auditlog.read_anchors, self.anchor_path) if self.anchor_path else []
        count, problem = await auditlog.verify_off_loop(self.db, anchors)
        self.last = Verification(self.clock(), by, count, len(anchors), problem)
        return self.last


VERIFIER = web.AppKey("audit_verifier", Verifier)


def _when(value: str) -> datetime:
    d = datetime.fromisoformat(value.strip().replace(" ", "T"))
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _search(source) -> tuple[dict[str, str], dict, str | None]:
    """(the filters as given, the query's keyword arguments, the name of a filter that is not valid)."""
    given = {k: str(source.get(k, "")).strip() for k in FILTERS}
    given = {k: v for k, v in given.items() if v}
    kw: dict = {}
    for k, v in given.items():
        if len(v) > MAX_FILTER_CHARS:
            return given, {}, k
        if k in ("since", "until"):
            try:
                kw[k] = _when(v)
            except ValueError:
                return given, {}, k
        else:
            kw[k] = v
    return given, kw, None


def _seq(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= MAX_SEQ_DIGITS else None


async def page(request: web.Request) -> web.Response:
    """GET /admin/audit?actor=&action=&target=&text=&since=&until=&before=: a page of entries, newest first."""
    acct = _admin(request)
    wm = request.app[WEBMAIL]
    given, kw, bad = _search(request.query)
    before = _seq(request.query.get("before", ""))
    rows = []
    if bad is None:
        async with wm.mailboxes.router.central.read() as conn:
            rows = (await conn.execute(auditlog.query(**kw, before=before, limit=PAGE))).all()
        await wm.mailboxes.directory.audit_soon(acct.address, "audit.view", "audit_log", via="web", search=given,
                                                before=before or "", shown=len(rows))
    verifier = request.app[VERIFIER]
    return wm.render(
        request, "admin_audit.html", error=None, saved=False, filters=given, bad=bad, rows=rows,
        detail=lambda d: d if len(d) <= DETAIL_SHOWN else d[:DETAIL_SHOWN] + "…",
        next_url=("/admin/audit?" + urlencode({**given, "before": rows[-1].seq})) if len(rows) == PAGE else None,
        newest_url=("/admin/audit?" + urlencode(given)) if before else None,
        export_url="/admin/audit/export?" + urlencode(given), verification=verifier.last,
        verified="verified" in request.query)


async def export(request: web.Request) -> web.StreamResponse:
    """GET /admin/audit/export?filters: the whole search as CSV, oldest first (`postroom audit export --csv`)."""
    acct = _admin(request)
    wm = request.app[WEBMAIL]
    given, kw, bad = _search(request.query)
    if bad is not None:
        raise web.HTTPBadRequest(text=i18n.translator(request[LOCALE])("error"), content_type="text/plain")
    await wm.mailboxes.directory.audit(acct.address, "audit.export", "audit_log", via="web", search=given)
    resp = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
                                       "Content-Disposition": 'attachment; filename="audit.csv"'})
    await resp.prepare(request)
    await resp.write(auditlog.csv_text((), header=True).encode())
    after = 0
    while True:
        async with wm.mailboxes.router.central.read() as conn:
            rows = (await conn.execute(auditlog.query(**kw, after=after, newest_first=False,
                                                      limit=EXPORT_BATCH))).all()
        if rows:
            await resp.write(auditlog.csv_text(rows).encode())  # waits while the client is slow: bounded memory
            after = rows[-1].seq
        if len(rows) < EXPORT_BATCH:
            break
    await resp.write_eof()
    return resp


async def verify(request: web.Request) -> web.Response:
    """POST /admin/audit/verify: check the chain and the anchors; the page then names the first bad entry."""
    acct = _admin(request)
    result, started = await request.app[VERIFIER].run(acct.address)
    await request.app[WEBMAIL].mailboxes.directory.audit(
        acct.address, "audit.verify", "audit_log", via="web", started=started, entries=result.entries,
        problem=str(result.problem or ""))
    raise web.HTTPSeeOther("/admin/audit?verified=1#audit-verify")


ROUTES = (
    ("GET", "/admin/audit", page),
    ("GET", "/admin/audit/export", export),
    ("POST", "/admin/audit/verify", verify),
)
