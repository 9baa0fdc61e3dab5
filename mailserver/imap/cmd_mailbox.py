"""Handlers on mailboxes as a whole: SELECT/EXAMINE (with QRESYNC), CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST, LSUB, STATUS, APPEND, QUOTA and ACL."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mailboxes import acl
from mailboxes.binaryparts import binary_parts_to_base64
from mailboxes.blobs import PreparedMessage
from mailboxes.errors import InvalidInput, NotFound, OverQuota
from mailboxes.ingest import prepare
from mailboxes.model import Flag, FolderRef, split_flags

from . import commands as c
from . import names
from . import responses as r
from .names import Mailbox
from .selected import SelectedMailbox
from .states import Bad, No, Ok, Selected
from .syntax import UnusableName

if TYPE_CHECKING:
    from .session import Session

PREPARE_IN_THREAD = 256 << 10  # parse larger APPENDs off the event loop
LIST_YIELD_EVERY = 512  # folders matched between two yields to the event loop
MAX_KEYWORDS = 64  # keywords one message may carry
_SPECIAL_USES = {"\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash", "\\All", "\\Flagged"}


def _account(s: Session):
    return s.state.account  # type: ignore[union-attr]  # dispatch guarantees Authenticated or Selected


async def resolve(s: Session, name: str, *, need: str = "l", trycreate: bool = False) -> Mailbox:
    """The named mailbox with right ``need`` (RFC 4314 §4), or NO [NONEXISTENT]/[TRYCREATE]/[NOPERM]."""
    try:
        mb = await names.resolve(s.services.store, _account(s), name)
    except (NotFound, InvalidInput):
        if trycreate:  # RFC 3501 §6.3.11, §6.4.7: tell the client it may CREATE and retry
            raise No("Mailbox does not exist", r.TRYCREATE) from None
        raise No("Mailbox does not exist", r.NONEXISTENT) from None
    if any(ch not in mb.rights for ch in need):
        raise No("Permission denied", r.NOPERM)
    return mb


def permanent_flags(mb: Mailbox, read_only: bool) -> tuple[str, ...]:
    if read_only:
        return ()
    out = []
    if mb.may("w"):
        out += ["\\Answered", "\\Flagged", "\\Draft"]
    if mb.may("t"):
        out.append("\\Deleted")
    if mb.may("s"):
        out.append("\\Seen")
    if mb.may("w"):
        out.append("\\*")  # RFC 3501 §7.1: new keywords may be created
    return tuple(out)


async def select(s: Session, tag: str, cmd: c.Select | c.Examine) -> Ok:  # RFC 3501 §6.3.1, §6.3.2
    if cmd.qresync is not None and not s.qresync:
        raise Bad("QRESYNC parameter needs ENABLE QRESYNC first")  # RFC 7162 §3.2.5
    if isinstance(s.state, Selected):
        s.leave_selected()
        s.wire.write(bytes(r.Untagged("OK", "Previous mailbox closed", r.CLOSED)))  # RFC 7162 §3.2.11
    if cmd.condstore:
        s.enable_condstore()  # RFC 7162 §3.1.8
    mb = await resolve(s, cmd.mailbox, need="lr")
    store = s.services.store
    ref = mb.folder.ref
    listener = store.bus.listen(ref)  # before reading, so nothing committed after the read is missed
    read_only = isinstance(cmd, c.Examine) or not mb.writable
    try:
        snap = await s.services.snapshots.load(ref)
        # RFC 3501 §2.3.2: recent for the first read-write session to see them, in any process.
        # IMAP4rev2 has no \Recent (RFC 9051 Appendix E): a rev2 session takes none.
        uids = snap.uids
        top = uids[-1] if uids else 0
        start = top if s.rev2 else await store.claim_recent(ref, top, read_only=read_only, mark=snap.recent_uid)
        listing = await _list_line(s, mb) if s.rev2 else b""
    except BaseException:
        listener.close()
        raise
    recent = set(uids[bisect.bisect_right(uids, start):])
    view = SelectedMailbox(modseq=snap.modseq, uidvalidity=snap.folder.uidvalidity, uidnext=snap.folder.uidnext,
                           read_only=read_only, recent=recent, state=snap.state, keywords=snap.keywords,
                           facts=snap.facts)
    w = s.wire
    w.write(view.flags_response())
    w.write(bytes(r.Untagged("OK", "Flags permitted", r.Code.permanentflags(permanent_flags(mb, read_only)))))
    if s.rev2:  # RFC 9051 §6.3.2: LIST for the mailbox; no RECENT, no [UNSEEN]
        w.write(b"* %d EXISTS\r\n" % view.exists + listing)
    else:
        w.write(b"* %d EXISTS\r\n* %d RECENT\r\n" % (view.exists, len(recent)))
        unseen = view.first_unseen()
        if unseen is not None:
            w.write(bytes(r.Untagged("OK", f"First unseen is {unseen}", r.Code.unseen(unseen))))
    w.write(bytes(r.Untagged("OK", "UIDs valid", r.Code.uidvalidity(view.uidvalidity))))
    w.write(bytes(r.Untagged("OK", "Predicted next UID", r.Code.uidnext(view.uidnext))))
    w.write(bytes(r.Untagged("OK", "Highest", r.Code.highestmodseq(view.modseq))))  # RFC 7162 §3.1.2.1
    s.state = Selected(_account(s), mb, view, listener)
    if cmd.qresync is not None and cmd.qresync.uidvalidity == view.uidvalidity:
        await _qresync(s, view, cmd.qresync)
    code = r.READ_ONLY if read_only else r.READ_WRITE
    return Ok(f"{cmd.NAME} completed", code)


async def _list_line(s: Session, mb: Mailbox) -> bytes:
    """``* LIST (\\HasNoChildren) "/" INBOX``: the selected mailbox's LIST response (RFC 9051 §6.3.2)."""
    children = names.ancestors(e.name for e in await names.tree(s.services.store, _account(s)) if e.listed)
    entry = names.Entry(mb.name, mb, subscribed=False, has_children=mb.name in children)
    return bytes(r.ListItem(names.attributes(entry, extended=True), names.DELIMITER, mb.name, utf8=s.utf8))


async def _qresync(s: Session, view: SelectedMailbox, q: c.QResync) -> None:
    """RFC 7162 §3.2.5.1: VANISHED (EARLIER) for what the client knew and is gone, FETCH for what changed."""
    st = s.state
    assert isinstance(st, Selected)
    changes = await s.services.store.changes_since(st.mailbox.folder.ref, q.modseq)
    gone = [u for u in changes.vanished if view.index_of(u) is None]
    if q.known_uids is not None:
        known = q.known_uids.matcher(max(q.known_uids.max_explicit(), 1))  # ranges merged once, then bisect
        gone = [u for u in gone if known(u)]
    if gone:
        s.wire.write(bytes(r.Vanished(c.SequenceSet.from_ints(gone), earlier=True)))
    lines = []
    for m in changes.changed:
        i = view.index_of(m.uid)
        if i is not None and view.modseqs[i] > q.modseq:
            lines.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (i + 1, m.uid, view.flags_of(i),
                                                                           view.modseqs[i]))
    s.wire.writelines(lines)


def _usable(name: str) -> str:
    if isinstance(name, UnusableName):  # RFC 3501 §5.1.3: NO, not BAD (the syntax is fine)
        raise No("Mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", r.CANNOT)
    return name


async def create(s: Session, tag: str, cmd: c.Create) -> Ok:  # RFC 3501 §6.3.3, RFC 6154 §3
    store, account = s.services.store, _account(s)
    _usable(cmd.mailbox)
    use = None
    if cmd.special_use:
        if len(cmd.special_use) > 1 or cmd.special_use[0] not in _SPECIAL_USES:
            raise No("Unsupported special-use attribute", r.Code("USEATTR"))
        use = cmd.special_use[0]
    shared = names.split_shared(cmd.mailbox.rstrip(names.DELIMITER))
    if shared is not None:  # a child of a shared folder: right "k" on its parent (RFC 4314 §4)
        owner, folder_name = shared
        parent = folder_name.rsplit(names.DELIMITER, 1)[0] if names.DELIMITER in folder_name else None
        if parent is None:
            raise No("Cannot create folders at the top of another user's namespace", r.NOPERM)
        pmb = await resolve(s, f"{names.SHARED}/{owner}/{parent}", need="k")
        await store.create_folder(pmb.owner, folder_name)
        return Ok("CREATE completed")
    if names.is_other_users(cmd.mailbox):
        raise No(f"{names.SHARED} is the other users' namespace", r.CANNOT)
    if cmd.mailbox.upper() == "INBOX":
        raise No("INBOX already exists", r.ALREADYEXISTS)
    await store.create_folder(account, cmd.mailbox, special_use=use)
    return Ok("CREATE completed")


async def delete(s: Session, tag: str, cmd: c.Delete) -> Ok:  # RFC 3501 §6.3.4, RFC 9051 §6.3.4
    if cmd.mailbox == "INBOX":
        raise No("INBOX cannot be deleted", r.CANNOT)
    try:
        mb = await resolve(s, cmd.mailbox, need="x")
    except No:
        # RFC 9051 §6.3.4, §7.1: a name that is only a level above others (\Noselect) is
        # refused with HASCHILDREN; rev1 clients keep NONEXISTENT.
        if s.rev2 and any(e.name == cmd.mailbox and e.mailbox is None and e.has_children
                          for e in await names.tree(s.services.store, _account(s))):
            raise No("Name has inferior hierarchical names", r.HASCHILDREN) from None
        raise
    if isinstance(s.state, Selected) and s.state.mailbox.folder.ref == mb.folder.ref:
        s.leave_selected()
    await s.services.store.delete_folder(mb.owner, mb.folder.name)
    return Ok("DELETE completed")


async def rename(s: Session, tag: str, cmd: c.Rename) -> Ok:  # RFC 3501 §6.3.5
    mb = await resolve(s, cmd.mailbox, need="x")
    _usable(cmd.new_name)
    if mb.owner.id != _account(s).id or names.is_other_users(cmd.new_name):
        raise No("Only your own folders can be renamed", r.NOPERM)
    store = s.services.store
    await store.rename_folder(mb.owner, mb.folder.name, cmd.new_name)
    st = s.state
    if isinstance(st, Selected) and st.mailbox.owner.id == mb.owner.id:
        # A rename gives the folder (and its children) a new generation; this session keeps
        # its selected folder under the new name, its UIDs unchanged. Other sessions on it
        # end at their next command (Session.may_read).
        ref = st.mailbox.folder.ref
        now = await store.folder_by_ref(FolderRef(ref.partition, ref.id))
        if now.uidvalidity != ref.generation:
            st.mailbox = Mailbox(now.name, now, st.mailbox.owner, st.mailbox.rights)
    return Ok("RENAME completed")


async def subscribe(s: Session, tag: str, cmd: c.Subscribe | c.Unsubscribe) -> Ok:  # RFC 3501 §6.3.6, §6.3.7
    """Subscriptions are names (own, ``Shared/<owner>/...`` or archive folders), kept apart from the folders.

    SUBSCRIBE checks that the mailbox exists (RFC 3501 §6.3.6 allows it; Dovecot does the same:
    NO [NONEXISTENT]). UNSUBSCRIBE checks nothing: a name whose folder is gone must still be
    removable, and a name that is not subscribed is OK (RFC 9051 §6.3.8 says so; Dovecot too).
    """
    on = isinstance(cmd, c.Subscribe)
    name = _usable(cmd.mailbox)
    if on:
        name = (await resolve(s, name)).name
    try:
        await s.services.store.subscribe(_account(s), name, on)
    except InvalidInput:
        raise No("Invalid mailbox name", r.CANNOT) from None
    except OverQuota:
        raise No("Too many subscriptions", r.LIMIT) from None
    return Ok(f"{cmd.NAME} completed")


async def list_(s: Session, tag: str, cmd: c.List) -> Ok:  # RFC 3501 §6.3.8, RFC 5258, RFC 5819, RFC 6154
    w, utf8 = s.wire, s.utf8
    if len(cmd.patterns) == 1 and cmd.patterns[0] == "" and not cmd.extended:
        w.write(bytes(r.ListItem(("\\Noselect",), names.DELIMITER, "", utf8=utf8)))  # the hierarchy delimiter
        return Ok("LIST completed")
    wanted = list(dict.fromkeys(p for p in cmd.patterns if p))
    if len(wanted) > names.MAX_LIST_PATTERNS:  # RFC 5258 §3 allows a list; each costs a pass over the folders
        raise Bad(f"Too many LIST patterns (limit {names.MAX_LIST_PATTERNS})")
    patterns = [names.list_pattern(cmd.reference, p) for p in wanted]
    sel = set(cmd.selection_options)
    want_subscribed = "SUBSCRIBED" in sel or "SUBSCRIBED" in cmd.return_options
    entries = await names.tree(s.services.store, _account(s))
    subscribed_below = names.ancestors(e.name for e in entries if e.subscribed)
    rows: list[tuple[bytes, Mailbox | None]] = []
    for k, e in enumerate(entries, 1):
        if k % LIST_YIELD_EVERY == 0:
            await asyncio.sleep(0)  # thousands of folders: let other sessions run
        if not names.matches(patterns, e.name):
            continue
        extra: tuple = ()
        if "SUBSCRIBED" in sel and not e.subscribed:
            if "RECURSIVEMATCH" in sel and e.name in subscribed_below:  # RFC 5258 §3.5 CHILDINFO
                extra = (("CHILDINFO", ("SUBSCRIBED",)),)
            else:
                continue
        elif "SUBSCRIBED" not in sel and not e.listed:
            continue  # only a subscribed name: LIST (SUBSCRIBED) shows it \NonExistent (RFC 5258 §3.1)
        if "SPECIAL-USE" in sel and (e.mailbox is None or not e.mailbox.folder.special_use):
            continue
        attrs = names.attributes(e, extended=cmd.extended, subscribed_attr=want_subscribed)
        rows.append((bytes(r.ListItem(attrs, names.DELIMITER, e.name, extra, utf8=utf8)), e.mailbox))
    if cmd.status_items is None:
        w.writelines([line for line, _ in rows])
    else:  # RFC 5819 §2: each selectable mailbox's STATUS right after its LIST line
        for line, mb in rows:
            w.write(line)
            if mb is not None and mb.may("r"):
                await _write_status(s, mb, cmd.status_items)
    return Ok("LIST completed")


async def lsub(s: Session, tag: str, cmd: c.Lsub) -> Ok:  # RFC 3501 §6.3.9
    patterns = [names.list_pattern(cmd.reference, cmd.pattern)]
    entries = await names.tree(s.services.store, _account(s))
    # RFC 3501 §6.3.9: with "%", "foo" is returned \Noselect for a subscribed "foo/bar" when
    # "foo" itself is not subscribed: the levels above subscribed names the pattern missed.
    above_missed = names.ancestors(e.name for e in entries if e.subscribed and not names.matches(patterns, e.name))
    lines = []
    for e in entries:
        if not names.matches(patterns, e.name):
            continue
        if e.subscribed:
            attrs = () if e.mailbox is not None else ("\\Noselect",)
        elif e.name in above_missed:
            attrs = ("\\Noselect",)
        else:
            continue
        lines.append(bytes(r.ListItem(attrs, names.DELIMITER, e.name, utf8=s.utf8, kind="LSUB")))
    s.wire.writelines(lines)
    return Ok("LSUB completed")


async def status(s: Session, tag: str, cmd: c.Status) -> Ok:  # RFC 3501 §6.3.10, RFC 9051 §6.3.11
    # RECENT is not in IMAP4rev2's grammar; a rev2 session asking for it is answered anyway
    # (lenient, as for the RECENT/NEW/OLD search keys): the count nobody has been told of.
    mb = await resolve(s, cmd.mailbox, need="r")
    if "HIGHESTMODSEQ" in cmd.items:
        s.enable_condstore()  # RFC 7162 §3.1
    await _write_status(s, mb, cmd.items)
    return Ok("STATUS completed")


async def _write_status(s: Session, mb: Mailbox, items: tuple[str, ...]) -> None:
    st = await s.services.store.status(mb.folder.ref)
    f = st.folder
    values = {
        "MESSAGES": st.messages, "UNSEEN": st.unseen, "UIDNEXT": f.uidnext, "UIDVALIDITY": f.uidvalidity,
        "RECENT": st.recent, "HIGHESTMODSEQ": f.highestmodseq,
        "SIZE": st.size, "DELETED": st.deleted, "APPENDLIMIT": s.services.limits.max_message,
    }  # fmt: skip
    s.wire.write(bytes(r.StatusData(mb.name, tuple((i, values[i]) for i in items), utf8=s.utf8)))


async def append(s: Session, tag: str, cmd: c.Append) -> Ok:  # RFC 3501 §6.3.11, RFC 4315 §3 APPENDUID
    if cmd.utf8 and not s.utf8:
        raise Bad("APPEND UTF8 needs ENABLE UTF8=ACCEPT")  # RFC 6855 §4
    if not cmd.message:
        raise No("Empty message", r.CANNOT)
    mb = await resolve(s, cmd.mailbox, need="i", trycreate=True)
    bits, keywords = split_flags(list(cmd.flags))
    bits, keywords = allowed_flags(mb, bits, keywords)
    check_keywords(keywords)
    raw = bytes(cmd.message)
    if len(raw) > PREPARE_IN_THREAD:
        prepared = await asyncio.to_thread(prepare_append, raw, cmd.literal8)
    else:
        prepared = prepare_append(raw, cmd.literal8)
    res = await s.services.store.append(mb.owner, mb.folder.ref, prepared, flags=bits, keywords=keywords,
                                        internal_date=cmd.internal_date)
    return Ok("APPEND completed", r.Code.appenduid(res.uidvalidity, res.uid))


def prepare_append(raw: bytes, literal8: bool) -> PreparedMessage:
    """Binary parts (literal8, RFC 3516 §4.4) and parts holding NUL are stored base64 (see mailboxes.binaryparts)."""
    return prepare(binary_parts_to_base64(raw, literal8))


def check_keywords(keywords: frozenset[str], present: Iterable[frozenset[str]] = ()) -> None:
    """At most MAX_KEYWORDS per message, counting those it has (RFC 3501 §2.3.2 lets a server limit them).

    Unbounded keywords made ``STORE 1:* +FLAGS (k1 ... k5000)`` hold a 5,000-name set per message.
    """
    if len(keywords) > MAX_KEYWORDS or (keywords and any(len(k) + len(keywords) > MAX_KEYWORDS and len(k | keywords) > MAX_KEYWORDS
                                       for k in present)):
        raise No(f"A message may carry at most {MAX_KEYWORDS} keywords", r.LIMIT)


def allowed_flags(mb: Mailbox, bits: int, keywords: frozenset[str]) -> tuple[int, frozenset[str]]:
    """Drop the flags the rights do not cover (RFC 4314 §4: s for \\Seen, t for \\Deleted, w for the rest)."""
    if not mb.may("s"):
        bits &= ~int(Flag.SEEN)
    if not mb.may("t"):
        bits &= ~int(Flag.DELETED)
    if not mb.may("w"):
        bits &= int(Flag.SEEN | Flag.DELETED)
        keywords = frozenset()
    return bits, keywords


# --- QUOTA (RFC 9208) ------------------------------------------------------------------------------


def _quota_root(mb: Mailbox, account) -> str:
    return "" if mb.owner.id == account.id else mb.owner.address


async def _quota_resources(s: Session, owner) -> tuple[tuple[str, int, int], ...]:
    q = await s.services.store.quota(owner)
    out = []
    if q.limit_bytes:  # RFC 9208 §5.1: STORAGE in units of 1024 octets
        out.append(("STORAGE", (q.used_bytes + 1023) // 1024, q.limit_bytes // 1024))
    if q.limit_messages:
        out.append(("MESSAGE", q.used_messages, q.limit_messages))
    return tuple(out)


async def getquotaroot(s: Session, tag: str, cmd: c.GetQuotaRoot) -> Ok:  # RFC 9208 §4.3
    mb = await resolve(s, cmd.mailbox)
    resources = await _quota_resources(s, mb.owner)
    root = _quota_root(mb, _account(s))
    s.wire.write(bytes(r.QuotaRootData(mb.name, (root,) if resources else (), utf8=s.utf8)))
    if resources:
        s.wire.write(bytes(r.QuotaData(root, resources)))
    return Ok("GETQUOTAROOT completed")


async def getquota(s: Session, tag: str, cmd: c.GetQuota) -> Ok:  # RFC 9208 §4.2
    account = _account(s)
    resources = await _quota_resources(s, account) if cmd.root == "" else ()
    if not resources:
        raise No("No such quota root", r.NONEXISTENT)
    s.wire.write(bytes(r.QuotaData("", resources)))
    return Ok("GETQUOTA completed")


async def setquota(s: Session, tag: str, cmd: c.SetQuota) -> Ok:  # RFC 9208 §4.4
    raise No("Quotas are set by the administrator (postroom user)", r.NOPERM)


# --- ACL (RFC 4314 §3) -------------------------------------------------------------------------------


async def setacl(s: Session, tag: str, cmd: c.SetAcl) -> Ok:  # RFC 4314 §3.1
    mb = await resolve(s, cmd.mailbox, need="a")
    try:
        await acl.set_rights(s.services.store, mb.folder, cmd.identifier, cmd.rights, cmd.mode)
    except InvalidInput as exc:
        raise Bad(str(exc)) from None
    return Ok("SETACL completed")


async def deleteacl(s: Session, tag: str, cmd: c.DeleteAcl) -> Ok:  # RFC 4314 §3.2
    mb = await resolve(s, cmd.mailbox, need="a")
    await acl.delete_rights(s.services.store, mb.folder, cmd.identifier)
    return Ok("DELETEACL completed")


async def getacl(s: Session, tag: str, cmd: c.GetAcl) -> Ok:  # RFC 4314 §3.3
    mb = await resolve(s, cmd.mailbox, need="a")
    entries = await acl.get_acl(s.services.store, mb.folder)
    s.wire.write(bytes(r.AclData(mb.name, tuple(entries), utf8=s.utf8)))
    return Ok("GETACL completed")


async def listrights(s: Session, tag: str, cmd: c.ListRights) -> Ok:  # RFC 4314 §3.4
    mb = await resolve(s, cmd.mailbox, need="a")
    if cmd.identifier.lower() == mb.owner.address:
        required, optional = acl.ALL_RIGHTS, ()
    else:
        required, optional = "", tuple(acl.ALL_RIGHTS)
    s.wire.write(bytes(r.ListRightsData(mb.name, cmd.identifier, required, optional, utf8=s.utf8)))
    return Ok("LISTRIGHTS completed")


async def myrights(s: Session, tag: str, cmd: c.MyRights) -> Ok:  # RFC 4314 §3.5
    mb = await resolve(s, cmd.mailbox)
    s.wire.write(bytes(r.MyRightsData(mb.name, mb.rights, utf8=s.utf8)))
    return Ok("MYRIGHTS completed")

