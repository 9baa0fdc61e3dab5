"""The one submission path: SMTP submission, webmail, bridges and DSNs are checked, stamped, delivered or queued here.

Implementation notes (invariants):
- `deliver()` is the commit point shared by `submit()`, `accept()` and the
  queue worker: local copies are written with Store.deliver (group commit)
  and remote recipients are queued (group commit); it returns only when both
  are durable, so a 250 sent after it is a promise kept.
- Local copies are written through delivery.personal: each account's rules
  place and flag its copy, out-of-office replies follow the commit; accounts
  with nothing set are written as one Delivery into INBOX, at no extra cost.
- Recipients are expanded through aliases and groups, duplicates removed:
  each account gets one copy however many of the envelope recipients lead to it.
- Local refusals found at write time (a quota reached since RCPT) do not
  lose mail: temporary ones are queued and retried locally by the worker,
  permanent ones are reported to the sender by DSN. When nothing at all could
  be written, nothing is queued and the caller gets the refusal instead.
- Directory answers (local domains, resolutions, group policy, sender
  addresses) are cached for CACHE_SECONDS, so a busy session costs no
  directory query per message; quota usage is cached for USAGE_SECONDS and
  kept true by adding what we deliver (other writers, e.g. IMAP APPEND, are
  seen when it expires; the store checks the quota again when it writes).
- DKIM: the copy that leaves for another server is signed when the From
  domain has an active key; local copies are not signed (nothing checks them).
  Signing and the MIME parse of large messages run off the event loop with
  bounded concurrency (mailboxes.offload).
- Final delivery (RFC 5321 §4.4): local copies get a Return-Path field with the
  reverse-path at the top, and any Return-Path already in the message is removed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial

from mailboxes.directory import Resolution
from mailboxes.documents import Documents
from mailboxes.held import DepartmentLabels, HeldMail
from mailboxes.leaders import DepartmentLeaders, Node, leader_for
from mailboxes.errors import InvalidInput, NotFound, OverQuota, StoreError
from mailboxes.headers import header_problem, originator, without_fields
from mailboxes.ingest import prepare
from mailboxes.mime import ParsedMessage, parse_message
from mailboxes.readstatus import normalise_message_id
from mailboxes.offload import offload, offload_if_large
from mailboxes.model import Account, Group
from mailboxes.service import Mailboxes

from . import dkim, dsn
from .envelope import (
    GROUP_POST_DENIED, MAIL_LOOP, OVER_QUOTA_PERM, OVER_QUOTA_TEMP, SENDER_NOT_ALLOWED, TEMPORARY_FAILURE, UNKNOWN_USER,
    Reply, ok_queued,
)
from .keys import DkimKeys
from .labels import Label, Labels, stamped
from .personal import PersonalDelivery
from .policy import PolicyError, Route, check_forward_path, check_header_from, check_sender, header_reply, parse_path
from .priority import ROUTINE, of_submission
from .queue import NewEntry, Queue, new_queue_id
from .received import date_time, received_header, too_many_hops

log = logging.getLogger("postroom.submit")

CACHE_SECONDS = 5.0
USAGE_SECONDS = 2.0
# A directory answer in use is loaded again in the background once it is this share of CACHE_SECONDS
# old (drawn per answer: answers loaded together are not all loaded again together).
REFRESH_AHEAD = (0.6, 0.9)
MAX_CACHED = 20_000  # directory answers kept at most (each side)
MAX_HEADER_SCAN = 64 * 1024
# Origins whose label is not the sender's choice: inbound mail (its label header is not trusted and is
# removed), reports we make ourselves, out-of-office replies (the account's own text, never the message)
# and mail released by an approver (already decided).
UNLABELLED = frozenset({"smtp", "dsn", "autoreply", "released"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Client:
    """Who handed the message over, for the Received header (RFC 5321 §4.4)."""

    ip: str
    helo: str
    protocol: str  # the `with` keyword: ESMTPSA, ESMTPS, HTTP, ...
    rdns: str | None = None
    tls: str | None = None


@dataclass(frozen=True)
class Submission:
    """A message from one of our users or our own services."""

    mail_from: str  # the reverse-path address, "" for the null path
    recipients: tuple[str, ...]
    data: bytes
    account: Account | None = None  # the logged-in submitter (None: a trusted internal service)
    client: Client | None = None
    origin: str = "submission"  # submission | webmail | bridge | dsn
    queue_id: str | None = None
    recipients_checked: bool = False  # the SMTP front checked each at RCPT already
    priority: int | None = None  # queue priority asked by a trusted caller (delivery.priority), else from headers


@dataclass(frozen=True)
class Outcome:
    queue_id: str
    reply: Reply  # 250 when anything was accepted, else the refusal
    delivered: int = 0  # local copies written
    queued: int = 0  # recipients queued (remote, or local retries)
    refused: tuple[tuple[str, Reply], ...] = field(default_factory=tuple)
    held: int = 0  # recipients held for approval (their destination is beyond the label's reach)

    @property
    def accepted(self) -> bool:
        return self.reply.is_positive


class _TTLCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._d: dict[object, tuple[float, object, float]] = {}  # key -> (loaded at, value, refresh from)

    def get(self, key: object) -> tuple[bool, object]:
        found, value, _refresh = self.lookup(key)
        return found, value

    def lookup(self, key: object) -> tuple[bool, object, bool]:
        """(found, value, due for a refresh ahead of its expiry)."""
        hit = self._d.get(key)
        now = time.monotonic()
        if hit is None or now - hit[0] > self.ttl:
            return False, None, False
        return True, hit[1], now >= hit[2]

    def put(self, key: object, value: object) -> None:
        if len(self._d) >= MAX_CACHED:
            self._d.clear()
        now = time.monotonic()
        self._d[key] = (now, value, now + self.ttl * random.uniform(*REFRESH_AHEAD))

    def forget(self, key: object) -> None:
        self._d.pop(key, None)

    def update(self, key: object, value: object) -> None:
        """Replace a cached value, keeping the time it was loaded (its age still counts)."""
        hit = self._d.get(key)
        if hit is not None:
            self._d[key] = (hit[0], value, hit[2])


class DirectoryCache:
    """Short-lived answers from the directory, so the hot path does not query it per message."""

    def __init__(self, mb: Mailboxes, ttl: float = CACHE_SECONDS) -> None:
        self.mb = mb
        self._answers = _TTLCache(ttl)
        self._loading: dict[object, asyncio.Future] = {}  # keys being loaded now (at most one load each)
        self._refreshing: set[asyncio.Task] = set()  # background loads ahead of expiry (kept referenced)
        self._usage = _TTLCache(USAGE_SECONDS)
        self.departments = DepartmentLabels(mb.router.central)
        self.leaders = DepartmentLeaders(mb.router.central)

    async def _cached(self, key: object, load: Callable, cache: _TTLCache | None = None):
        """The cached answer, else `load()`'s; concurrent misses of one key share one load (a burst of
        deliveries to one person after the answer expired asks the directory once, not once each).

        An answer in use is loaded again in the background before it expires (REFRESH_AHEAD), its
        callers answered from the cache meanwhile: under a steady flow the answers, all loaded in
        its first second, expired together every CACHE_SECONDS and the deliveries of that moment
        waited for ~100 directory queries a process (bridges_bench, 900 events/s: the latency rose
        by 300-500 ms every 5 s). An answer is never older than CACHE_SECONDS, as before.
        With `cache` (the quota usage, which deliveries keep true themselves) misses share a load, and
        nothing is loaded ahead: a load would race the deliveries' own additions.
        """
        answers = self._answers if cache is None else cache
        found, value, refresh = answers.lookup(key)
        if found:
            if refresh and cache is None and key not in self._loading:
                self._refresh(key, load)
            return value
        running = self._loading.get(key)
        if running is not None:
            await asyncio.wait([running])  # not shielded by us: our own cancellation still ends this wait
            if not running.cancelled():
                return running.result()
            return await self._cached(key, load, cache)  # that load failed: try our own (and see its error)
        return await self._load(key, load, answers, self._announce(key))

    def _announce(self, key: object) -> asyncio.Future:
        """Say that `key` is being loaded: whoever misses it meanwhile waits for this load."""
        self._loading[key] = running = asyncio.get_running_loop().create_future()
        return running

    async def _load(self, key: object, load: Callable, answers: _TTLCache, running: asyncio.Future):
        try:
            value = await load()
        except BaseException:
            running.cancel()  # its waiters load for themselves
            raise
        finally:
            del self._loading[key]
        answers.put(key, value)
        running.set_result(value)
        return value

    def _refresh(self, key: object, load: Callable) -> None:
        running = self._announce(key)  # at once: the callers of this moment start no second refresh

        async def again() -> None:
            try:
                await self._load(key, load, self._answers, running)
            except Exception as exc:  # noqa: BLE001 - the answer stays until it expires; a load then meets the error
                log.debug("directory answer %r not refreshed: %s", key, exc)

        task = asyncio.get_running_loop().create_task(again(), name="directory cache refresh")
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def local_domains(self) -> frozenset[str]:
        return await self._cached("domains", lambda: self._domains())

    async def _domains(self) -> frozenset[str]:
        return frozenset(await self.mb.directory.local_domains())

    async def resolve(self, address: str) -> Resolution | None:
        async def load():
            try:
                return await self.mb.directory.resolve(address)
            except InvalidInput:
                return None
        return await self._cached(("resolve", address.lower()), load)

    async def group(self, address: str) -> Group | None:
        async def load():
            try:
                return await self.mb.directory.group(address)
            except (NotFound, InvalidInput):
                return None
        return await self._cached(("group", address.lower()), load)

    async def may_post(self, group: str, sender: str | None) -> bool:
        async def load():
            try:
                return await self.mb.directory.may_post(group, sender)
            except (InvalidInput, NotFound):
                return False
        return await self._cached(("post", group.lower(), (sender or "").lower()), load)

    async def partner_domains(self) -> frozenset[str]:
        async def load():
            return frozenset(p.domain.lower() for p in await Documents(self.mb.router.central).partners())
        return await self._cached("partners", load)

    async def department_label(self, department_id: int) -> str | None:
        return await self._cached(("dlabel", department_id), lambda: self.departments.of(department_id))

    async def leader_tree(self) -> dict[int, Node]:
        return await self._cached("leaders", self.leaders.tree)

    async def sender_addresses(self, account: Account) -> frozenset[str]:
        async def load():
            return frozenset(await self.mb.directory.sender_addresses(account))
        return await self._cached(("senders", account.id), load)

    async def usage(self, account: Account) -> tuple[int, int]:
        """(bytes, messages) the account holds; concurrent misses (RCPTs to one person) share one query."""
        async def load():
            q = await self.mb.store.quota(account)
            return q.used_bytes, q.used_messages
        return await self._cached(("usage", account.id), load, self._usage)

    def add_usage(self, account_ids, size: int) -> None:
        """We just wrote `size` bytes to these accounts: keep their cached usage true without a query."""
        for i in account_ids:
            found, value = self._usage.get(("usage", i))
            if found:
                self._usage.update(("usage", i), (value[0] + size, value[1] + 1))


def quota_reply(account: Account, used: tuple[int, int], size: int) -> Reply | None:
    """The RCPT-time view of the store's quota rule (the store checks again when it writes)."""
    if account.quota_bytes and size > account.quota_bytes:
        return OVER_QUOTA_PERM  # can never fit
    if account.quota_bytes and used[0] + size > account.quota_bytes:
        return OVER_QUOTA_TEMP
    if account.quota_messages and used[1] + 1 > account.quota_messages:
        return OVER_QUOTA_TEMP
    return None


def header_block(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n", 0, MAX_HEADER_SCAN)
    if end < 0:
        end = data.find(b"\n\n", 0, MAX_HEADER_SCAN)
    return data[: end + 2] if end >= 0 else data[:MAX_HEADER_SCAN]


_HAS_MESSAGE_ID = re.compile(rb"(?im)^message-id[ \t]*:")
_HAS_DATE = re.compile(rb"(?im)^date[ \t]*:")
_MESSAGE_ID_VALUE = re.compile(rb"(?im)^message-id[ \t]*:[ \t]*(<[^>\r\n]{1,250}>)")  # bounded, no backtracking
def header_from_domain(data: bytes) -> str | None:
    """The domain of the From: address that picks the DKIM key, read as ENVELOPE reads it; None if in doubt.

    mailboxes.headers is the one reader (design.md "One parser per format"): a
    message whose From is ambiguous (two fields in any spelling, unparseable) is
    not signed, and the submission check has refused it already.
    """
    who = originator(data)
    if who.problem is not None or not who.from_ or not who.from_[0].host:
        return None
    return who.from_[0].host.rstrip(".").lower() or None


def with_return_path(data: bytes, mail_from: str) -> bytes:
    """The message as finally delivered: one Return-Path with the reverse-path on top (RFC 5321 §4.4)."""
    stripped = without_fields(data, lambda name, _field: name == "return-path")
    return f"Return-Path: <{mail_from}>\r\n".encode("utf-8") + stripped


class Submitter:
    def __init__(self, mb: Mailboxes, queue: Queue, keys: DkimKeys, *, hostname: str,
                 clock: Callable[[], datetime] = utcnow, cache_ttl: float = CACHE_SECONDS,
                 labels: Labels | None = None, approvers: str = "") -> None:
        self.mb = mb
        self.queue = queue
        self.keys = keys
        self.hostname = hostname
        self.clock = clock
        self.directory = DirectoryCache(mb, cache_ttl)
        self.personal = PersonalDelivery(mb, clock=clock, hostname=hostname, send=self._auto_reply)
        self.labels = labels
        self.approvers = approvers  # the office group asked to approve held mail ("" : nobody is told)
        self.held = HeldMail(mb.router.central, clock=clock)

    async def _auto_reply(self, to: str, data: bytes) -> Outcome:
        """An out-of-office reply: from the null reverse-path (RFC 3834 §3.3), through submit() as all mail."""
        return await self.submit(Submission("", (to,), data, origin="autoreply"))

    # --- door checks (the SMTP front calls these at MAIL / RCPT) ----------------------

    async def local_domains(self) -> frozenset[str]:
        return await self.directory.local_domains()

    async def sender_addresses(self, account: Account) -> frozenset[str]:
        return await self.directory.sender_addresses(account)

    async def _resolve(self, address: str, domains: frozenset[str]) -> Resolution | None:
        if "@" not in address:  # the bare <postmaster> of RFC 5321 §4.5.1
            for d in sorted(domains, key=lambda d: (not self.hostname.endswith(d), d)):
                res = await self.directory.resolve(f"postmaster@{d}")
                if res is not None:
                    return res
            return None
        if address.rpartition("@")[2].lower() not in domains:
            return Resolution((), (address,))
        return await self.directory.resolve(address)

    async def check_recipient(self, address: str, *, sender: str | None, size: int = 0) -> Reply | None:
        """None if mail for `address` can be taken now; else the refusal (550 5.1.1, 550 5.7.2, 452/552 quota).

        The relay decision is made before this (mailserver.smtp.policy);
        `sender` is the reverse-path that group posting policy judges.
        """
        domains = await self.directory.local_domains()
        res = await self._resolve(address, domains)
        if res is None:
            return UNKNOWN_USER  # RFC 3463 X.1.1
        if not res.local and not res.remote:
            return UNKNOWN_USER  # a group with nobody in it, or a disabled account
        if "@" in address and address.rpartition("@")[2].lower() in domains:
            group = await self.directory.group(address)
            if group is not None and not await self.directory.may_post(group.address, sender):
                return GROUP_POST_DENIED
        if len(res.local) == 1 and not res.remote:
            acct = res.local[0]
            if acct.quota_bytes or acct.quota_messages:
                return quota_reply(acct, await self.directory.usage(acct), size)
        return None

    async def check_submitter(self, account: Account, mail_from: str) -> Reply | None:
        """May this login use this reverse-path? (RFC 6409 §6.1)."""
        try:
            addr = parse_path(f"<{mail_from}>", True, reverse=True)
        except PolicyError:
            return SENDER_NOT_ALLOWED
        return check_sender(addr, login_account=account.address,
                            allowed_addresses=await self.directory.sender_addresses(account))

    # --- submit: messages from our own users and services ------------------------------

    async def submit(self, sub: Submission) -> Outcome:
        """Check, stamp (Received, Message-ID/Date if missing), sign for remote recipients, deliver or queue."""
        qid = sub.queue_id or new_queue_id()
        refused: list[tuple[str, Reply]] = []
        problem = header_problem(sub.data)
        if problem is not None:
            return self._logged(sub, Outcome(qid, header_reply(problem)))
        if too_many_hops(sub.data):  # RFC 5321 §6.3
            return self._logged(sub, Outcome(qid, MAIL_LOOP))
        if sub.account is not None:
            allowed = await self.directory.sender_addresses(sub.account)
            bad = await self.check_submitter(sub.account, sub.mail_from)
            if bad is None:
                bad = check_header_from(sub.data, login_account=sub.account.address, allowed_addresses=allowed)
            if bad is not None:
                return self._logged(sub, Outcome(qid, bad))
        rcpts = list(dict.fromkeys(sub.recipients))
        if not sub.recipients_checked:
            # The same door rules as RCPT TO (syntax, literals, bare hosts, users, lists, quota);
            # our users and services may send anywhere, so relaying is allowed.
            sender = sub.mail_from or None
            domains = await self.directory.local_domains()
            ok = []
            for r in rcpts:
                addr, route = check_forward_path(f"<{r}>", smtputf8=True, authenticated=True, local_domains=domains)
                why = route if isinstance(route, Reply) else None
                if why is None and route is Route.LOCAL:
                    why = await self.check_recipient(str(addr), sender=sender, size=len(sub.data))
                if why is None:
                    ok.append(str(addr))
                else:
                    refused.append((r, why))
            rcpts = list(dict.fromkeys(ok))
            if not rcpts:
                return self._logged(sub, Outcome(qid, refused[0][1] if refused else UNKNOWN_USER,
                                                 refused=tuple(refused)))
        stamp = self._stamp(sub, qid, rcpts)
        data = sub.data
        if self.labels is not None and sub.origin not in UNLABELLED:
            label = await offload_if_large(len(data), self.labels.of, data, await self._department_label(sub.account))
            data = stamped(data, label)
        out = await self.deliver(queue_id=qid, mail_from=sub.mail_from, recipients=tuple(rcpts),
                                 data=stamp + data, origin=sub.origin,
                                 submitter=sub.account.address if sub.account else None,
                                 sign_domain=partial(header_from_domain, sub.data), tracked_by=sub.account,
                                 priority=of_submission(sub.data, sub.origin, sub.priority))
        if refused:
            out = Outcome(out.queue_id, out.reply, out.delivered, out.queued, tuple(refused) + out.refused)
        if out.accepted:  # one audit entry per message sent (issue 13): never the body
            found = _MESSAGE_ID_VALUE.search(header_block(stamp + sub.data))
            await self.mb.directory.audit_soon(
                sub.account.address if sub.account else f"service:{sub.origin}", "message.sent",
                found.group(1).decode("ascii", "replace") if found else "", sender=sub.mail_from,
                recipients=len(rcpts), queue_id=qid, origin=sub.origin)
        return self._logged(sub, out)

    async def _department_label(self, account: Account | None) -> Label | None:
        """The sender's department's default label, if it names one the list knows."""
        if account is None or account.department_id is None or self.labels is None:
            return None
        name = await self.directory.department_label(account.department_id)
        return self.labels.find(name) if name else None

    def _logged(self, sub: Submission, out: Outcome) -> Outcome:
        if sub.origin not in ("submission", "smtp"):  # the SMTP front writes its own line
            log.info("submit queue_id=%s origin=%s user=%s from=<%s> rcpts=%d delivered=%d queued=%d result=%s",
                     out.queue_id, sub.origin, sub.account.address if sub.account else "-", sub.mail_from,
                     len(sub.recipients), out.delivered, out.queued, str(out.reply).replace("\r\n", " | "))
        return out

    def _stamp(self, sub: Submission, qid: str, rcpts: list[str]) -> bytes:
        now = self.clock()
        c = sub.client or Client("127.0.0.1", "localhost", "LOCAL")
        out = received_header(helo=c.helo, client_ip=c.ip, client_rdns=c.rdns, by_host=self.hostname,
                              protocol=c.protocol, when=now, queue_id=qid,
                              recipient=rcpts[0] if len(rcpts) == 1 else None, tls_info=c.tls)
        head = header_block(sub.data)
        # RFC 6409 §8.2, §8.3: the MSA may add a missing Date and Message-ID.
        if not _HAS_DATE.search(head):
            out += f"Date: {date_time(now)}\r\n".encode("ascii")
        if not _HAS_MESSAGE_ID.search(head):
            out += f"Message-ID: <{qid.lower()}.{int(now.timestamp())}@{self.hostname}>\r\n".encode("ascii")
        return out

    # --- the commit point -------------------------------------------------------------

    async def deliver(self, *, queue_id: str, mail_from: str, recipients: tuple[str, ...], data: bytes,
                      origin: str, submitter: str | None = None,
                      sign_domain: str | Callable[[], str | None] | None = None,
                      tracked_by: Account | None = None, priority: int = ROUTINE) -> Outcome:
        """Expand, write local copies, queue the rest; durable when it returns (see module notes).

        ``sign_domain``: the DKIM signing domain, or how to read it (only mail that leaves is signed:
        reading the From of every local notification was a tenth of its delivery's CPU).
        ``tracked_by``: the local account that submitted it; its colleagues' copies get a read
        status (mailboxes.readstatus), recorded in the store only, never in the message.
        """
        domains = await self.directory.local_domains()
        local: dict[int, Account] = {}
        remote: dict[str, str] = {}
        refused: list[tuple[str, Reply]] = []
        for rcpt in recipients:
            res = await self._resolve(rcpt, domains)
            if res is None or (not res.local and not res.remote):
                refused.append((rcpt, UNKNOWN_USER))
                continue
            for a in res.local:
                local.setdefault(a.id, a)
            for r in res.remote:  # a remote local part may be case-sensitive (RFC 5321 §2.4)
                local_part, _, domain = r.rpartition("@")
                remote.setdefault(f"{local_part}@{domain.lower()}", r)
        held: list[str] = []
        if self.labels is not None and origin == "smtp":
            data = without_fields(data, lambda name, _f: name == "x-postroom-classification")  # not trusted
        elif self.labels is not None and remote and origin not in UNLABELLED:
            label = await offload_if_large(len(data), self.labels.of, data)  # scans the body (Labels.carried)
            partners = await self.directory.partner_domains()
            for key in list(remote):
                if not self.labels.allows(label, key.rpartition("@")[2], local=domains, partners=partners):
                    held.append(remote.pop(key))
        delivered, retry, failed = 0, [], []
        if local:
            accounts = list(local.values())
            final = with_return_path(data, mail_from)
            prepared = await offload_if_large(len(final), prepare, final)
            tracks = await self._start_tracking(tracked_by, accounts, prepared, queue_id)
            results = await self.personal.write(prepared, accounts, mail_from=mail_from, queue_id=queue_id,
                                                tracks=tracks)
            if tracks:  # a copy refused for now keeps its row: the queue's retry delivers it (deliver_local)
                await self.mb.store.readstatus.delivered(
                    [tracks[a.id] for a, r in zip(accounts, results) if a.id in tracks
                     and not isinstance(r, Exception)],
                    [tracks[a.id] for a, r in zip(accounts, results) if a.id in tracks
                     and isinstance(r, OverQuota) and r.permanent], self.clock())
            for acct, r in zip(accounts, results):
                if not isinstance(r, Exception):
                    delivered += 1
                    self.directory.add_usage([acct.id], len(data))
                elif isinstance(r, OverQuota) and r.permanent:
                    failed.append((acct.address, OVER_QUOTA_PERM))
                elif isinstance(r, OverQuota):
                    retry.append((acct.address, OVER_QUOTA_TEMP))
                else:
                    log.warning("local delivery queue_id=%s to=%s failed: %s", queue_id, acct.address, r)
                    retry.append((acct.address, TEMPORARY_FAILURE))
        if held:
            await self._hold(queue_id, mail_from, submitter, label, data, held)
        if not delivered and not remote and not held:
            # Nothing written: refuse as a whole and let the client keep the message.
            problems = retry + failed + refused
            worst = next((rp for _, rp in problems if rp.is_transient), problems[0][1] if problems else UNKNOWN_USER)
            return Outcome(queue_id, worst, refused=tuple(problems))
        queued = list(remote.values()) + [a for a, _ in retry]
        if queued:
            if remote and callable(sign_domain):
                sign_domain = sign_domain()
            qdata = await self._signed(data, sign_domain) if remote else data
            await self.queue.enqueue(NewEntry(queue_id, mail_from, tuple(queued), qdata, origin, submitter,
                                              priority))
        failed += refused
        if failed:
            await self.bounce(queue_id, mail_from, data, failed)
        return Outcome(queue_id, ok_queued(queue_id), delivered, len(queued), tuple(failed), len(held))

    async def _hold(self, queue_id: str, mail_from: str, submitter: str | None, label: Label, data: bytes,
                    recipients: list[str]) -> None:
        """Keep the message for these recipients until an approver decides (delivery.approval); audited.

        The approver is the sender's department leader, walking up to the parent departments
        (mailboxes.leaders.leader_for), else the office group; the request goes to them only.
        """
        subject = parse_message(header_block(data) + b"\r\n").envelope.subject_decoded.strip()
        sender = submitter or mail_from
        leader = leader_for(await self.directory.leaders.tree(), await self._department_of(sender), sender)
        held_id = await self.held.hold(queue_id=queue_id, mail_from=mail_from, submitter=submitter,
                                       label=label.zh, subject=subject, data=data, recipients=tuple(recipients),
                                       approver=leader)
        await self.mb.directory.audit(sender or "-", "held", queue_id, held_id=held_id,
                                      label=label.zh, recipients=recipients, approver=leader or "office")
        log.info("held queue_id=%s held_id=%d label=%s rcpts=%d approver=%s", queue_id, held_id, label.en,
                 len(recipients), leader or "office")
        await self.ask_approval(held_id, label, sender, recipients, data, leader)

    async def ask_approval(self, held_id: int, label: Label, sender: str, recipients: list[str], data: bytes,
                           leader: str | None) -> None:
        """Mail the approval request to the leader, else to each member of the office but the sender."""
        if leader is not None:
            asked: tuple[str, ...] = (leader,)
        else:  # a group may refuse the null sender: its members one by one
            office = await self.directory.resolve(self.approvers) if self.approvers else None
            asked = tuple(a.address for a in office.local if a.address != sender) if office else ()
        if asked:
            from .approval import request_message  # a module of its own; it imports this one
            await self.submit(Submission("", asked, request_message(
                hostname=self.hostname, held_id=held_id, label=label, sender=sender,
                recipients=recipients, original=data, now=self.clock()), origin="approval"))

    async def _department_of(self, address: str) -> int | None:
        """The department of the local account that sent held mail (None: no account, no department)."""
        try:
            return (await self.mb.directory.account(address)).department_id if address else None
        except (NotFound, InvalidInput):
            return None

    async def _start_tracking(self, sender: Account | None, accounts: list[Account], prepared,
                              queue_id: str) -> dict[int, int]:
        """Read-status rows for the sender's colleagues (not the sender's own copy); account id -> track id."""
        colleagues = [a for a in accounts if sender is not None and a.id != sender.id]
        if not colleagues:
            return {}
        env = ParsedMessage.from_json(prepared.parsed_json).envelope
        message_id = normalise_message_id(env.message_id)
        if message_id is None:
            return {}
        return await self.mb.store.readstatus.start(sender, message_id, queue_id, env.subject_decoded.strip(),
                                                    colleagues, self.clock())

    async def deliver_local(self, address: str, data: bytes, mail_from: str = "",
                            queue_id: str | None = None) -> Reply | None:
        """The worker's local retry of one account: None when written, else why not.

        ``queue_id``: the message's; a colleague's copy whose first delivery failed for now is
        written with its read-status row (mailboxes/readstatus.py), so the sender sees it arrive.
        """
        try:
            acct = await self.mb.directory.account(address)
        except (NotFound, InvalidInput):
            return UNKNOWN_USER
        final = with_return_path(data, mail_from)
        prepared = await offload_if_large(len(final), prepare, final)
        track = await self.mb.store.readstatus.pending_copy(queue_id, acct.id) if queue_id else None
        [r] = await self.personal.write(prepared, [acct], mail_from=mail_from, queue_id=queue_id or "retry",
                                        tracks={acct.id: track} if track else None)
        if track and (not isinstance(r, Exception) or (isinstance(r, OverQuota) and r.permanent)):
            ok = not isinstance(r, Exception)
            await self.mb.store.readstatus.delivered([track] if ok else [], [] if ok else [track], self.clock())
        if not isinstance(r, Exception):
            self.directory.add_usage([acct.id], len(data))
            return None
        if isinstance(r, OverQuota):
            return OVER_QUOTA_PERM if r.permanent else OVER_QUOTA_TEMP
        return TEMPORARY_FAILURE

    async def _signed(self, data: bytes, domain: str | None) -> bytes:
        key = await self.keys.signing_key(domain) if domain else None
        if key is None:
            return data
        try:
            header = await offload(dkim.sign, data, key.domain, key.selector, key.private_pem)
        except ValueError as exc:
            log.warning("DKIM signing for %s failed: %s", domain, exc)
            return data
        return header + data

    async def bounce(self, queue_id: str, mail_from: str, original: bytes,
                     failed: list[tuple[str, Reply]] | list[dsn.RecipientStatus], *, delayed: bool = False,
                     arrival: datetime | None = None) -> str | None:
        """Tell the sender by DSN (RFC 3464); never for a bounce. Returns the DSN's queue id."""
        if dsn.is_bounce(mail_from):
            return None
        now = self.clock()
        statuses = [f if isinstance(f, dsn.RecipientStatus) else
                    dsn.RecipientStatus(f[0], "failed", f[1].enhanced, diagnostic=str(f[1]).replace("\r\n", " "),
                                        remote_mta=self.hostname, last_attempt=now)
                    for f in failed]
        build = dsn.build_delay_warning if delayed else dsn.build_dsn
        try:
            body = build(reporting_mta=self.hostname, original_sender=mail_from, original_message=original,
                         recipients=statuses, arrival_date=arrival or now, now=now)
        except dsn.DsnError as exc:
            log.warning("no DSN for queue_id=%s: %s", queue_id, exc)
            return None
        qid = new_queue_id()
        stamp = received_header(helo="localhost", client_ip="127.0.0.1", client_rdns=None, by_host=self.hostname,
                                protocol="LOCAL", when=now, queue_id=qid, recipient=mail_from)
        try:
            out = await self.deliver(queue_id=qid, mail_from="", recipients=(mail_from,), data=stamp + body,
                                     origin="dsn")
        except StoreError as exc:
            log.warning("DSN for queue_id=%s could not be written: %s", queue_id, exc)
            return None
        log.info("dsn queue_id=%s for=%s to=<%s> action=%s result=%s", qid, queue_id, mail_from,
                 "delayed" if delayed else "failed", out.reply.code)
        return qid
