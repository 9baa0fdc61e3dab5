"""Handlers on the selected mailbox's messages: CHECK, CLOSE, UNSELECT, EXPUNGE, SEARCH, FETCH, STORE, COPY, MOVE and IDLE."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailboxes.model import Flag, split_flags

from . import commands as c
from . import responses as r
from .cmd_mailbox import allowed_flags, check_keywords, resolve
from .fetch import FetchPlan, run_fetch
from .grammar import ConnectionClosed, ContinuationLine
from .search import SearchContext, esearch_modseq, esearch_saved, evaluate, result
from .states import Bad, No, Ok, Selected, SessionEnd

if TYPE_CHECKING:
    from .session import Session

_SEEN = int(Flag.SEEN)
MAX_AUDITED_UIDS = 1000  # UIDs named in one shared-read audit entry (the count says how many in all)


def _selected(s: Session) -> Selected:
    st = s.state
    assert isinstance(st, Selected)  # the dispatch table allows these commands only when selected
    return st


def _writable(st: Selected, right: str) -> None:
    if st.read_only:
        raise No("Mailbox is read-only", r.READ_ONLY)
    if not st.mailbox.may(right):
        raise No("Permission denied", r.NOPERM)


async def check(s: Session, tag: str, cmd: c.Check) -> Ok:  # RFC 3501 §6.4.1: a checkpoint; sync follows
    return Ok("CHECK completed")


async def close(s: Session, tag: str, cmd: c.Close) -> Ok:  # RFC 3501 §6.4.2: expunge silently, deselect
    st = _selected(s)
    if not st.read_only and st.mailbox.may("e"):
        await s.services.store.expunge(st.mailbox.folder.ref)
    s.leave_selected()
    return Ok("CLOSE completed")


async def unselect(s: Session, tag: str, cmd: c.Unselect) -> Ok:  # RFC 3691 §2
    s.leave_selected()
    return Ok("UNSELECT completed")


async def expunge(s: Session, tag: str, cmd: c.Expunge | c.UidExpunge) -> Ok:  # RFC 3501 §6.4.3, RFC 4315 §2.1
    st = _selected(s)
    _writable(st, "e")
    uids = None
    if isinstance(cmd, c.UidExpunge):
        uids = [st.view.uids[i] for i in st.view.resolve(cmd.uids, uid=True, saved=s.saved)]
    gone, kept = await s.services.store.expunge_report(st.mailbox.folder.ref, uids)
    s.wire.writelines(st.view.expunge(gone, vanished=s.qresync))
    if kept:  # the others are gone (the EXPUNGEs above); these stay, still \Deleted (docs/retention.md)
        hold = next(iter(kept.values()))
        raise No(f"{len(kept)} message(s) kept: under {hold.label}", r.CANNOT)
    return Ok(f"{cmd.NAME} completed")


async def search(s: Session, tag: str, cmd: c.Search) -> Ok:  # RFC 3501 §6.4.4, RFC 4731, RFC 5182
    st = _selected(s)
    # Flags other sessions changed count now: the view catches up first (no expunges, RFC 3501 §7.4.1).
    await s.sync(allow_expunge=False, checked=True)
    ctx = SearchContext(st.view, s.services.store, s.services.cache, st.mailbox.folder.ref, saved=s.saved)
    found = await evaluate(ctx, cmd.criteria)
    if ctx.used_modseq:
        s.enable_condstore()
    res = result(ctx, found, uid=cmd.uid)
    if cmd.return_options is None and not s.rev2:
        s.wire.write(bytes(r.SearchData(res.numbers, res.modseq)))
        return Ok(f"{cmd.name} completed")
    # RFC 4731 §3.1: RETURN () means ALL; IMAP4rev2 answers a plain SEARCH so too (RFC 9051 §6.4.4)
    opts = cmd.return_options or ("ALL",)
    if "SAVE" in opts:
        s.saved = esearch_saved(res, opts)
    if set(opts) != {"SAVE"}:  # RFC 5182 §2.4: SAVE alone returns no ESEARCH
        nums = res.numbers
        s.wire.write(bytes(r.ESearchData(
            tag=tag, uid=cmd.uid,
            min=nums[0] if nums and "MIN" in opts else None, max=nums[-1] if nums and "MAX" in opts else None,
            count=len(nums) if "COUNT" in opts else None,
            all=c.SequenceSet.from_ints(nums) if nums and "ALL" in opts else None,
            modseq=esearch_modseq(st.view, res, opts))))
    return Ok(f"{cmd.name} completed")


async def fetch(s: Session, tag: str, cmd: c.Fetch) -> Ok:  # RFC 3501 §6.4.5, §6.4.8; RFC 7162 §3.1.4
    st = _selected(s)
    view = st.view
    if cmd.vanished and not s.qresync:
        raise Bad("VANISHED needs ENABLE QRESYNC")  # RFC 7162 §3.2.6
    idx = view.resolve(cmd.sequence_set, uid=cmd.uid, saved=s.saved)
    plan = FetchPlan.of(cmd)
    if cmd.changed_since is not None or any(isinstance(i, c.FetchAtt) and i.name == "MODSEQ" for i in cmd.items):
        s.enable_condstore()
    if cmd.changed_since is not None:
        since = cmd.changed_since
        if cmd.vanished:  # RFC 7162 §3.2.6: expunged UIDs of the set, as VANISHED (EARLIER)
            changes = await s.services.store.changes_since(st.mailbox.folder.ref, since)
            top = max(view.uids[-1] if view.uids else 0, cmd.sequence_set.max_explicit())
            member = cmd.sequence_set.matcher(top)  # ranges merged once, then bisect per UID
            gone = [u for u in changes.vanished if member(u) and view.index_of(u) is None]
            if gone:
                s.wire.write(bytes(r.Vanished(c.SequenceSet.from_ints(gone), earlier=True)))
        idx = [i for i in idx if view.modseqs[i] > since]
    flags_changed: set[int] = set()
    if plan.sets_seen and not st.read_only and st.mailbox.may("s"):
        unseen = [view.uids[i] for i in idx if not view.flags[i] & _SEEN and view.uids[i] not in view.ghosts]
        if unseen:  # RFC 3501 §6.4.5: BODY[...] without .PEEK sets \Seen
            changed, _ = await s.services.store.store_flags(st.mailbox.folder.ref, unseen, "add", _SEEN)
            flags_changed = set(view.update(changed))
    if plan.raw and st.mailbox.owner.id != st.account.id:
        await _audit_shared_reads(s, st, idx)
    await run_fetch(view, idx, plan, store=s.services.store, cache=s.services.cache,
                    ref=st.mailbox.folder.ref, out=s.wire, flags_changed=flags_changed)
    return Ok(f"{cmd.name} completed")


async def _audit_shared_reads(s: Session, st: Selected, idx) -> None:
    """One audit entry per message of another account's folder whose body this selection reads (issue 13).

    Entries go through the directory's buffered writer (no write per FETCH on this path); one entry
    lists the UIDs first read by this command, so a FETCH 1:* costs one entry, not one per message."""
    fresh = [st.view.uids[i] for i in idx if st.view.uids[i] not in st.shared_reads]
    if not fresh:
        return
    st.shared_reads.update(fresh)
    await s.services.auth.directory.audit_soon(
        st.account.address, "mailbox.read", f"{st.mailbox.owner.address}/{st.mailbox.folder.name}", protocol="imap",
        uids=fresh[:MAX_AUDITED_UIDS], messages=len(fresh))


async def store(s: Session, tag: str, cmd: c.Store) -> Ok:  # RFC 3501 §6.4.6, RFC 7162 §3.1.3
    st = _selected(s)
    view = st.view
    if st.read_only:
        raise No("Mailbox is read-only", r.READ_ONLY)
    idx = view.resolve(cmd.sequence_set, uid=cmd.uid, saved=s.saved)
    if cmd.unchanged_since is not None:
        s.enable_condstore()
    bits, keywords = split_flags(list(cmd.flags))
    bits, keywords = allowed_flags(st.mailbox, bits, keywords)
    if cmd.mode == "replace" and not all(st.mailbox.may(x) for x in "swt"):
        raise No("Replacing all flags needs the s, w and t rights", r.NOPERM)  # RFC 4314 §4
    live = [i for i in idx if view.uids[i] not in view.ghosts]
    check_keywords(keywords, (view.keywords_of(i) for i in live) if cmd.mode == "add" else ())
    uids = [view.uids[i] for i in live]
    # RFC 3501 §6.4.6: the FETCH lines give each message's flags as they now are, also those this
    # STORE left alone; the view learns what other sessions changed first (no expunges: §7.4.1).
    await s.sync(allow_expunge=False, checked=True)
    changed, failed = await s.services.store.store_flags(
        st.mailbox.folder.ref, uids, cmd.mode, bits, keywords, unchanged_since=cmd.unchanged_since)
    changed_idx = set(view.update(changed))
    if view.new_keywords(changed):
        s.wire.write(view.flags_response())
    failed_set = set(failed)
    condstore = s.condstore
    lines = []
    for i in live:
        uid = view.uids[i]
        if uid in failed_set:
            continue
        if cmd.silent and not (condstore and i in changed_idx):
            continue
        parts = [b"UID %d" % uid] if cmd.uid else []
        if not cmd.silent:
            parts.append(b"FLAGS " + view.flags_of(i))
        if condstore:  # RFC 7162 §3.1.3: MODSEQ even with .SILENT for what changed
            parts.append(b"MODSEQ (%d)" % view.modseqs[i])
        lines.append(b"* %d FETCH (%s)\r\n" % (i + 1, b" ".join(parts)))
    s.wire.writelines(lines)
    if failed:  # RFC 7162 §3.1.3: MODIFIED lists what failed UNCHANGEDSINCE
        nums = failed if cmd.uid else [view.index_of(u) + 1 for u in failed if view.index_of(u) is not None]  # type: ignore[operator]
        return Ok("Conditional STORE failed for some messages", r.Code.modified(c.SequenceSet.from_ints(nums)))
    return Ok(f"{cmd.name} completed")


async def copy_move(s: Session, tag: str, cmd: c.Copy | c.Move) -> Ok:  # RFC 3501 §6.4.7, RFC 6851, RFC 4315
    st = _selected(s)
    view = st.view
    moving = isinstance(cmd, c.Move)
    if moving:
        _writable(st, "te")
    idx = view.resolve(cmd.sequence_set, uid=cmd.uid, saved=s.saved)
    uids = [view.uids[i] for i in idx if view.uids[i] not in view.ghosts]
    dest = await resolve(s, cmd.mailbox, need="i", trycreate=True)
    store = s.services.store
    kept: dict = {}
    if moving:
        uidvalidity, pairs, kept = await store.move_report(dest.owner, st.mailbox.folder.ref, uids, dest.folder.ref)
    else:
        uidvalidity, pairs = await store.copy(dest.owner, st.mailbox.folder.ref, uids, dest.folder.ref)
    code = None
    if pairs:
        code = r.Code.copyuid(uidvalidity, c.SequenceSet.from_ints([a for a, _ in pairs]),
                              c.SequenceSet.from_ints([b for _, b in pairs]))
    if not moving:
        return Ok(f"{cmd.name} completed", code)
    if code is not None:  # RFC 6851 §4.3: COPYUID in an untagged OK, then the expunges
        s.wire.write(bytes(r.Untagged("OK", "Moved", code)))
    s.wire.writelines(view.expunge([a for a, _ in pairs if a not in kept], vanished=s.qresync))
    if kept:  # copied, and kept in the source too: a legal hold forbids removing them (docs/retention.md)
        return Ok(f"{cmd.name} completed; {len(kept)} message(s) under {next(iter(kept.values())).label}"
                  " were copied and also kept here")
    return Ok(f"{cmd.name} completed")


async def idle(s: Session, tag: str, cmd: c.Idle) -> Ok:  # RFC 2177
    """Wait for DONE, writing updates as the bus reports them (new mail within moments of its commit)."""
    w = s.wire
    w.parser.expect_line()
    await s.sync(allow_expunge=True, force=True)
    w.write(bytes(r.Continuation("idling")))
    await w.drain()
    reader = asyncio.ensure_future(w.next_event())
    waiter: asyncio.Future | None = None
    try:
        while True:
            st = s.state
            if isinstance(st, Selected) and waiter is None:
                waiter = asyncio.ensure_future(st.listener.queue.get())
            with w.interruptible():
                done, _ = await asyncio.wait([f for f in (reader, waiter) if f is not None],
                                             return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                break
            waiter = None
            await s.sync(allow_expunge=True, force=True)
            await w.drain()
    finally:
        if waiter is not None:
            waiter.cancel()
        if not reader.done():
            reader.cancel()
    event = reader.result()
    if isinstance(event, ConnectionClosed):
        raise SessionEnd("client closed the connection during IDLE")
    if isinstance(event, ContinuationLine) and event.data.strip().upper() == b"DONE":
        return Ok("IDLE terminated")
    raise Bad("Expected DONE")
