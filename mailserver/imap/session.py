"""One IMAP session: the state machine, the dispatch table of handlers, and errors mapped to NO/BAD in one place.

Implementation notes (invariants)
- Dispatch is the visible table ``HANDLERS`` (command type → handler) and ``ALLOWED`` (state
  type → command types); a command outside its states gets BAD and changes nothing.
- Every failure becomes a reply in ``reply_for``: ``No``/``Bad`` as raised, store errors by
  type (RFC 5530 codes), anything else is logged and answered ``NO [SERVERBUG]``; the
  connection and the server stay up.
- Untagged updates for the selected mailbox are written after the handler and before its
  tagged reply (``sync``), with RFC 3501 §7.4.1's rule on EXPUNGE: not after FETCH, STORE
  or SEARCH (their UID forms may carry it).
- IMAP4rev2 (RFC 9051) is advertised beside IMAP4rev1 and is on only after ``ENABLE IMAP4rev2``
  (``rev2``): then no \\Recent or RECENT, SELECT sends LIST, SEARCH answers ESEARCH, names are
  UTF-8. A client that does not enable it gets rev1 behaviour byte for byte.
- The session does no socket I/O itself: it writes bytes to, and asks for parser events
  from, a ``Wire`` that the asyncio adapter (server.py) provides.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from mailboxes import errors as store_errors
from mailboxes.directory import Directory
from mailboxes.store import Store
from mailserver.auth import Authenticator, is_loopback

from . import cmd_any, cmd_mailbox, cmd_message, cmd_multiappend, cmd_sort, names
from . import commands as c
from . import responses as r
from .cache import FolderSnapshots, RenderCache
from .fetch import UnknownCte
from .grammar import (
    BadCharset,
    Command,
    CommandParser,
    ConnectionClosed,
    ContinuationLine,
    Event,
    LimitExceeded,
    NeedContinuation,
    ParseError,
)  # fmt: skip
from .selected import BadSequence
from .states import (
    REPLIED,
    Authenticated,
    Bad,
    LoggedOut,
    No,
    NotAuthenticated,
    Ok,
    Selected,
    SessionEnd,
    State,
)
from .syntax import SEARCH_CHARSETS

log = logging.getLogger("postroom.imap")

MAX_PREAUTH_LITERAL = 64 << 10  # octets of literal a client may send before logging in
MAX_OTHER_LITERAL = 1 << 20  # synchronising literal of anything but APPEND, once logged in


@dataclass(frozen=True)
class Limits:
    max_line: int = 64 << 10  # RFC 7162 §4 asks servers to take at least 8192 octets
    max_message: int = 50 << 20  # APPEND literal (RFC 7889 APPENDLIMIT)
    idle_timeout: float = 1800.0  # RFC 3501 §5.4: at least 30 minutes, IDLE included (RFC 2177)
    connections_per_account: int = 50
    plaintext_on_loopback: bool = False


class Registry:
    """Connections held per account, bounded (``[limits] imap_connections_per_account``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count: dict[int, int] = {}

    def acquire(self, account_id: int) -> bool:
        n = self._count.get(account_id, 0)
        if n >= self.limit:
            return False
        self._count[account_id] = n + 1
        return True

    def release(self, account_id: int) -> None:
        n = self._count.get(account_id, 0) - 1
        if n > 0:
            self._count[account_id] = n
        else:
            self._count.pop(account_id, None)


@dataclass
class Services:
    """What every session shares, built once by server.start (no globals)."""

    store: Store
    directory: Directory
    auth: Authenticator
    limits: Limits
    cache: RenderCache
    snapshots: FolderSnapshots
    registry: Registry = field(default_factory=lambda: Registry(50))
    tls_available: bool = False


class Wire(Protocol):
    """The session's view of its connection (implemented by server.Connection)."""

    parser: CommandParser
    tls: bool
    peer_ip: str | None
    idle_timeout: float  # seconds the client may stay silent

    def write(self, data: bytes) -> None: ...

    def writelines(self, data: Iterable[bytes]) -> None: ...

    async def drain(self) -> None: ...

    async def next_event(self) -> Event: ...

    async def start_tls(self, reply: bytes) -> None: ...  # writes reply, then upgrades

    compressed: bool  # COMPRESS=DEFLATE active (RFC 4978)

    async def start_compress(self, reply: bytes) -> None: ...  # writes reply, then compresses both ways

    def interruptible(self): ...  # context manager: shutdown may cancel while inside


Handler = Callable[["Session", str, c.CommandBody], Awaitable[Ok]]

# RFC 3501 §6.1-§6.4 and the extensions: command type → handler (UID forms share the type).
HANDLERS: dict[type[c.CommandBody], Handler] = {
    c.Capability: cmd_any.capability, c.Noop: cmd_any.noop, c.Logout: cmd_any.logout, c.Id: cmd_any.id_,
    c.StartTLS: cmd_any.starttls, c.Authenticate: cmd_any.authenticate, c.Login: cmd_any.login,
    c.Enable: cmd_any.enable, c.Namespace: cmd_any.namespace, c.Compress: cmd_any.compress,
    c.Select: cmd_mailbox.select, c.Examine: cmd_mailbox.select, c.Create: cmd_mailbox.create,
    c.Delete: cmd_mailbox.delete, c.Rename: cmd_mailbox.rename, c.Subscribe: cmd_mailbox.subscribe,
    c.Unsubscribe: cmd_mailbox.subscribe, c.List: cmd_mailbox.list_, c.Lsub: cmd_mailbox.lsub,
    c.Status: cmd_mailbox.status, c.Append: cmd_mailbox.append,
    c.GetQuota: cmd_mailbox.getquota, c.GetQuotaRoot: cmd_mailbox.getquotaroot, c.SetQuota: cmd_mailbox.setquota,
    c.SetAcl: cmd_mailbox.setacl, c.DeleteAcl: cmd_mailbox.deleteacl, c.GetAcl: cmd_mailbox.getacl,
    c.ListRights: cmd_mailbox.listrights, c.MyRights: cmd_mailbox.myrights,
    c.Check: cmd_message.check, c.Close: cmd_message.close, c.Unselect: cmd_message.unselect,
    c.Expunge: cmd_message.expunge, c.UidExpunge: cmd_message.expunge, c.Search: cmd_message.search,
    c.Fetch: cmd_message.fetch, c.Store: cmd_message.store, c.Copy: cmd_message.copy_move,
    c.Move: cmd_message.copy_move, c.Idle: cmd_message.idle,
    c.Sort: cmd_sort.sort, c.Thread: cmd_sort.thread, c.MultiAppend: cmd_multiappend.multiappend,  # RFC 5256, 3502
}  # fmt: skip

_ANY = frozenset({c.Capability, c.Noop, c.Logout, c.Id})
_AUTHENTICATED = _ANY | {
    c.Select, c.Examine, c.Create, c.Delete, c.Rename, c.Subscribe, c.Unsubscribe, c.List, c.Lsub, c.Status,
    c.Append, c.Namespace, c.Idle, c.GetQuota, c.GetQuotaRoot, c.SetQuota, c.SetAcl, c.DeleteAcl, c.GetAcl,
    c.ListRights, c.MyRights, c.MultiAppend, c.Compress,  # RFC 4978 §3: COMPRESS once authenticated
}  # fmt: skip
ALLOWED: dict[type, frozenset[type[c.CommandBody]]] = {
    NotAuthenticated: _ANY | {c.StartTLS, c.Authenticate, c.Login},  # RFC 3501 §6.2
    Authenticated: _AUTHENTICATED | {c.Enable},  # RFC 5161 §3.1: ENABLE only before SELECT
    Selected: _AUTHENTICATED | {  # RFC 3501 §6.4
        c.Check, c.Close, c.Unselect, c.Expunge, c.UidExpunge, c.Search, c.Fetch, c.Store, c.Copy, c.Move,
        c.Sort, c.Thread},
    LoggedOut: frozenset(),
}
# RFC 3501 §7.4.1: no EXPUNGE while answering these (their UID forms may carry it).
NO_EXPUNGE = frozenset({c.Fetch, c.Store, c.Search, c.Sort, c.Thread})
# Commands after which the store is asked for changes even without a bus event (polling clients).
ALWAYS_SYNC = frozenset({c.Noop, c.Check})
# Commands that read or change the selected mailbox's messages (RFC 4314 §4 names the right each
# needs): before each, the folder and the session's rights on it are looked up again, so a
# mailbox deleted or re-created meanwhile ends the session and a share revoked meanwhile is
# refused, instead of being honoured from SELECT time. Without "r" they get NO [NOPERM].
# Another account's folder is looked up before every such command (rights also change with
# group membership); an own folder only after the bus announced a delete or rename of it
# (its rights cannot change, and the store refuses writes through a stale ref anyway).
NEEDS_READ = frozenset({c.Expunge, c.UidExpunge, c.Search, c.Fetch, c.Store, c.Copy, c.Move, c.Sort, c.Thread})
RECHECKED = NEEDS_READ | {c.Close}
MAILBOX_GONE = "Selected mailbox was deleted, have to disconnect"

BASE_CAPS = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")
FULL_CAPS = (
    "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE",
    "LIST-EXTENDED", "LIST-STATUS", "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "BINARY",
    "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE", "ACL", "RIGHTS=texk", "UTF8=ACCEPT", "STATUS=SIZE",
    "SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "ESORT", "MULTIAPPEND",
    "COMPRESS=DEFLATE",
)  # fmt: skip
_STORE_CODES = {  # RFC 5530 §3
    store_errors.NotFound: r.NONEXISTENT, store_errors.AlreadyExists: r.ALREADYEXISTS,
    store_errors.InvalidInput: r.CANNOT, store_errors.OverQuota: r.OVERQUOTA,
    store_errors.PermissionDenied: r.NOPERM, store_errors.ReadOnly: r.CANNOT,
    store_errors.UnderHold: r.CANNOT,
}  # fmt: skip


class Session:
    """The state machine of one connection; ``handle(event)`` for each parser event."""

    def __init__(self, services: Services, wire: Wire, *, session_id: str = "-") -> None:
        self.services = services
        self.wire = wire
        self.id = session_id
        self.state: State = NotAuthenticated()
        self.enabled: set[str] = set()  # ENABLEd extensions (RFC 5161)
        self.condstore = False  # RFC 7162 §3.1: on after any CONDSTORE-enabling command
        self.saved: list[int] = []  # RFC 5182 search result, as UIDs
        self.commands = 0
        self.client_id = ""
        self.user = ""
        self._registered: int | None = None
        wire.parser.max_literal = MAX_PREAUTH_LITERAL

    # --- facts -----------------------------------------------------------------------------

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled or self.rev2  # RFC 9051 §5.1: rev2 names are UTF-8

    @property
    def rev2(self) -> bool:
        """IMAP4rev2 behaviour (RFC 9051 §6.3.1): only after ``ENABLE IMAP4rev2``; rev1 clients see none of it."""
        return "IMAP4rev2" in self.enabled

    def plaintext_ok(self) -> bool:
        """LOGIN / AUTHENTICATE PLAIN allowed: over TLS, or from loopback when configured (RFC 3501 §6.2.3)."""
        return self.wire.tls or (self.services.limits.plaintext_on_loopback and is_loopback(self.wire.peer_ip))

    def capabilities(self) -> tuple[str, ...]:
        if isinstance(self.state, NotAuthenticated):
            caps = list(BASE_CAPS)
            if not self.wire.tls and self.services.tls_available:
                caps.append("STARTTLS")  # RFC 3501 §6.2.1
            caps.append("AUTH=PLAIN" if self.plaintext_ok() else "LOGINDISABLED")
            return tuple(caps)
        return (*BASE_CAPS, *FULL_CAPS, f"APPENDLIMIT={self.services.limits.max_message}")

    def greeting(self) -> bytes:
        return bytes(r.Untagged("OK", "Postroom IMAP4rev1 ready", r.Code.capability(self.capabilities())))

    def enable_condstore(self) -> None:
        """Turn CONDSTORE on; the first time with a mailbox selected, say its HIGHESTMODSEQ.

        RFC 7162 §3.1: a CONDSTORE-enabling command issued while a mailbox is selected
        makes the server send ``OK [HIGHESTMODSEQ]`` for it (before that command's own
        responses), since the client did not get it at SELECT time.
        """
        if self.condstore:
            return
        self.condstore = True
        if isinstance(self.state, Selected):
            view = self.state.view
            self.wire.write(bytes(r.Untagged("OK", "Highest", r.Code.highestmodseq(view.modseq))))

    # --- logging in and out ----------------------------------------------------------------

    def logged_in(self, account) -> None:
        """Enter the authenticated state, holding one of the account's connection slots."""
        if not self.services.registry.acquire(account.id):
            raise No("Too many connections for this account", r.LIMIT)
        self._registered = account.id
        self.user = account.address
        self.state = Authenticated(account)
        self.wire.parser.max_literal = self.services.limits.max_message + 1024
        self.wire.idle_timeout = self.services.limits.idle_timeout

    def leave_selected(self) -> None:
        if isinstance(self.state, Selected):
            self.state.listener.close()
            self.state = Authenticated(self.state.account)
            self.saved = []

    def close(self) -> None:
        """Release what the session holds; safe to call twice."""
        self.leave_selected()
        if self._registered is not None:
            self.services.registry.release(self._registered)
            self._registered = None
        self.state = LoggedOut()

    # --- events ----------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        w = self.wire
        if isinstance(event, Command):
            await self.command(event.tag, event.command)
        elif isinstance(event, NeedContinuation):
            if event.command != "APPEND" and event.size > MAX_OTHER_LITERAL:
                w.parser.reject_literal()
                w.write(bytes(r.Tagged(event.tag, "BAD", "Literal too large", r.TOOBIG)))
            else:
                w.write(bytes(r.Continuation("Ready for literal data")))  # RFC 3501 §7.5
        elif isinstance(event, ParseError):
            w.write(bytes(r.Tagged(event.tag or "*", "BAD", f"Error in IMAP command: {event.message}")))
        elif isinstance(event, BadCharset):  # RFC 3501 §6.4.4
            w.write(bytes(r.Tagged(event.tag, "NO", "Unsupported charset", r.Code.badcharset(SEARCH_CHARSETS))))
        elif isinstance(event, LimitExceeded):
            w.write(self._limit_reply(event))
        elif isinstance(event, ContinuationLine):
            w.write(bytes(r.Untagged("BAD", "Unexpected continuation")))
        elif isinstance(event, ConnectionClosed):
            raise SessionEnd("client closed the connection" if not event.incomplete else "closed mid-command")
        await w.drain()

    def _limit_reply(self, ev: LimitExceeded) -> bytes:
        tag = ev.tag or "*"
        if ev.kind == "literal" and ev.command == "APPEND" and not isinstance(self.state, NotAuthenticated):
            return bytes(r.Tagged(tag, "NO", f"Message larger than {ev.limit} octets", r.TOOBIG))  # RFC 7889
        what = "Command line" if ev.kind == "line" else "Literal"
        return bytes(r.Tagged(tag, "BAD", f"{what} too long (limit {ev.limit} octets)", r.TOOBIG))

    async def command(self, tag: str, cmd: c.CommandBody) -> None:
        self.commands += 1
        kind = type(cmd)
        handler = HANDLERS.get(kind)
        if handler is None or kind not in ALLOWED[type(self.state)]:
            self.wire.write(bytes(r.Tagged(tag, "BAD", f"{cmd.name} is not valid in this state")))
            return
        st = self.state
        checked = kind in RECHECKED and isinstance(st, Selected)
        try:
            if checked and not await self.may_read() and kind in NEEDS_READ:
                raise No("Access to the selected mailbox was revoked", r.NOPERM)
            outcome: Ok | Exception = await handler(self, tag, cmd)
        except SessionEnd:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a reply below, in one place
            outcome = exc
        allow_expunge = kind not in NO_EXPUNGE or getattr(cmd, "uid", False)
        try:
            await self.sync(allow_expunge=allow_expunge, force=kind in ALWAYS_SYNC, checked=checked)
        except SessionEnd:
            raise
        except Exception:
            log.exception("imap session=%s: sync failed", self.id)
        if outcome is not REPLIED:
            self.wire.write(self.reply_for(tag, cmd, outcome))

    def reply_for(self, tag: str, cmd: c.CommandBody, outcome: Ok | Exception) -> bytes:
        """The tagged completion: the one place where typed errors become NO / BAD."""
        if isinstance(outcome, Ok):
            return bytes(r.Tagged(tag, "OK", outcome.text, outcome.code))
        if isinstance(outcome, No):
            return bytes(r.Tagged(tag, "NO", outcome.text, outcome.code))
        if isinstance(outcome, Bad):
            return bytes(r.Tagged(tag, "BAD", outcome.text, outcome.code))
        if isinstance(outcome, BadSequence):  # RFC 3501 §9 seq-number beyond EXISTS
            return bytes(r.Tagged(tag, "BAD", "Invalid message sequence number"))
        if isinstance(outcome, UnknownCte):  # RFC 3516 §4.3
            return bytes(r.Tagged(tag, "NO", str(outcome), r.Code("UNKNOWN-CTE")))
        if isinstance(outcome, store_errors.StoreError):
            code = next((v for k, v in _STORE_CODES.items() if isinstance(outcome, k)), None)
            return bytes(r.Tagged(tag, "NO", str(outcome) or "Refused", code))
        log.error("imap session=%s user=%s: %s failed", self.id, self.user, cmd.name, exc_info=outcome)
        return bytes(r.Tagged(tag, "NO", "Internal server error; the problem has been logged", r.SERVERBUG))

    # --- the selected mailbox's updates -------------------------------------------------------

    async def may_read(self) -> bool:
        """Whether the session may still read its selected folder, looking it up again when due (see NEEDS_READ).

        Ends the session (``* BYE``, as Dovecot does) when the folder was deleted, re-created
        or renamed elsewhere: its UIDs may no longer be applied to anything.
        """
        st = self.state
        assert isinstance(st, Selected)
        if st.mailbox.owner.id == st.account.id and st.identity_seen == st.listener.identity_events:
            return st.mailbox.may("r")
        st.identity_seen = st.listener.identity_events
        try:
            st.mailbox = await names.refresh(self.services.store, st.account, st.mailbox)
        except store_errors.NotFound:
            raise SessionEnd("selected mailbox deleted", MAILBOX_GONE) from None
        return st.mailbox.may("r")

    async def sync(self, *, allow_expunge: bool, force: bool = False, checked: bool = False) -> None:
        """Write what changed in the selected mailbox since the client last heard (RFC 3501 §7.3, §7.4.1).

        Nothing is written once the session's read right is gone; ``checked``: the rights were
        looked up for this command already.
        """
        st = self.state
        if not isinstance(st, Selected):
            return
        queue = st.listener.queue
        dirty = not queue.empty()
        while not queue.empty():
            queue.get_nowait()
        view = st.view
        if not (dirty or force or (allow_expunge and view.ghosts)):
            return
        if not (st.mailbox.may("r") if checked else await self.may_read()):
            return
        try:
            changes = await self.services.store.changes_since(st.mailbox.folder.ref, view.modseq)
        except store_errors.NotFound:
            raise SessionEnd("selected mailbox deleted", MAILBOX_GONE) from None
        # RFC 3501 §2.3.2: new mail is recent for the first session told of it (store-wide claim).
        top = view.uids[-1] if view.uids else 0
        new = [m.uid for m in changes.changed if m.uid > top]
        mine: set[int] = set()
        if new and not self.rev2:  # RFC 9051 has no \Recent: a rev2 session claims none
            try:
                start = await self.services.store.claim_recent(st.mailbox.folder.ref, max(new),
                                                               read_only=view.read_only)
            except store_errors.NotFound:
                raise SessionEnd("selected mailbox deleted", MAILBOX_GONE) from None
            mine = {u for u in new if u > start}
        lines = view.apply(changes, allow_expunge=allow_expunge, condstore=self.condstore,
                           qresync=self.qresync, claim_recent=None if self.rev2 else lambda uids: mine & set(uids))
        if lines:
            self.wire.writelines(lines)
