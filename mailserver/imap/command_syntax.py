"""Per-command argument grammar of IMAP4rev1 and its extensions, and the table from command name to parser."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from . import commands as c
from . import sort_syntax
from .commands import MAX_NUMBER64, SequenceSet
from .syntax import (
    SEARCH_CHARSETS,
    SPECIAL_USE,
    BadCharsetError,
    Cursor,
    SyntaxErr,
    fetch_att,
    search_key,
)

_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")
_STORE_ATT = re.compile(rb"([+-]?)FLAGS(\.SILENT)?", re.I)
_RIGHTS = re.compile(r"[+-]?[a-z0-9]*")
_TAG = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\+]+")  # tag: ASTRING-CHAR except "+"


# ------------------------------------------------------------------ commands

Parser = Callable[[Cursor], c.CommandBody]


def _no_args(cls: type[c.CommandBody]) -> Parser:
    return lambda cur: cls()


def _authenticate(cur: Cursor) -> c.Authenticate:  # RFC 3501 §6.2.2, RFC 4959 §3 SASL-IR
    cur.sp()
    mechanism = cur.keyword()
    initial = None
    if cur.maybe(b" "):
        raw = cur.match(_BASE64, "base64").group()
        initial = b"" if raw == b"=" else base64.b64decode(raw, validate=True)
    return c.Authenticate(mechanism, initial)


def _login(cur: Cursor) -> c.Login:  # RFC 3501 §6.2.3
    cur.sp()
    user = cur.text()
    cur.sp()
    return c.Login(user, cur.text())


def _select(cls: type[c.Select] | type[c.Examine]) -> Parser:
    def parse(cur: Cursor) -> c.CommandBody:  # RFC 3501 §6.3.1; RFC 4466 §2.1 select-params
        cur.sp()
        mailbox = cur.mailbox()
        params: dict[str, object] = {}
        if cur.maybe(b" "):
            for name, value in cur.plist(lambda: _select_param(cur), min_items=1):
                if name in params:
                    raise cur.fail("duplicate select parameter")
                params[name] = value
        return cls(mailbox, condstore="condstore" in params, qresync=params.get("qresync"))  # type: ignore[arg-type]

    return parse


def _select_param(cur: Cursor) -> tuple[str, object]:
    name = cur.keyword()
    if name == "CONDSTORE":  # RFC 7162 §3.1.8
        return "condstore", True
    if name != "QRESYNC":
        raise cur.fail("unknown select parameter")
    cur.sp()  # RFC 7162 §3.2.5
    cur.expect(b"(")
    uidvalidity = cur.number(1)
    cur.sp()
    modseq = cur.modseq()
    known = match = None
    if cur.maybe(b" "):
        if cur.peek() != b"(":
            known = _star_free_set(cur)
            if cur.maybe(b" "):
                match = _seq_match(cur)
        else:
            match = _seq_match(cur)
    cur.expect(b")")
    return "qresync", c.QResync(uidvalidity, modseq, known, match)


def _seq_match(cur: Cursor) -> tuple[SequenceSet, SequenceSet]:
    cur.expect(b"(")
    seqs = _star_free_set(cur)
    cur.sp()
    uids = _star_free_set(cur)
    cur.expect(b")")
    return seqs, uids


def _star_free_set(cur: Cursor) -> SequenceSet:
    s = cur.sequence_set()
    if s.saved or any(None in r for r in s.ranges):  # RFC 7162 §7: "*" is not allowed
        raise cur.fail("'*' not allowed here")
    return s


def _create(cur: Cursor) -> c.Create:  # RFC 3501 §6.3.3; RFC 6154 §3 (USE (...))
    cur.sp()
    mailbox = cur.mailbox()
    uses: tuple[str, ...] = ()
    if cur.maybe(b" ("):
        if cur.keyword() != "USE":
            raise cur.fail("unknown create parameter")
        cur.sp()
        uses = cur.plist(lambda: _special_use(cur))
        cur.expect(b")")
    return c.Create(mailbox, uses)


def _special_use(cur: Cursor) -> str:
    cur.expect(b"\\")
    name = "\\" + cur.atom()
    return SPECIAL_USE.get(name.lower(), name)


def _one_mailbox(cls: Callable[[str], c.CommandBody]) -> Parser:
    def parse(cur: Cursor) -> c.CommandBody:
        cur.sp()
        return cls(cur.mailbox())

    return parse


def _rename(cur: Cursor) -> c.Rename:  # RFC 3501 §6.3.5
    cur.sp()
    old = cur.mailbox()
    cur.sp()
    return c.Rename(old, cur.mailbox())


LIST_SELECT = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}  # RFC 5258 §3.1, RFC 6154 §5.1
LIST_RETURN = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"}  # RFC 5258 §3.2, RFC 6154 §5.2; STATUS: RFC 5819


def _list(cur: Cursor) -> c.List:  # RFC 3501 §6.3.8, RFC 5258 §3
    cur.sp()
    extended = False
    selection: tuple[str, ...] = ()
    if cur.peek() == b"(":
        selection, extended = cur.plist(cur.keyword), True
        if any(o not in LIST_SELECT for o in selection):
            raise cur.fail("unknown LIST selection option")
        if "RECURSIVEMATCH" in selection and not set(selection) - {"RECURSIVEMATCH", "REMOTE"}:
            raise cur.fail("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3.1
        cur.sp()
    reference = cur.decode_name(cur.astring())
    cur.sp()
    if cur.peek() == b"(":
        patterns, extended = cur.plist(cur.list_mailbox, min_items=1), True
    else:
        patterns = (cur.list_mailbox(),)
    returns: list[str] = []
    status: tuple[str, ...] | None = None
    if cur.maybe(b" "):
        if cur.keyword() != "RETURN":
            raise cur.fail("expected RETURN")
        cur.sp()
        for opt in cur.plist(lambda: _list_return(cur)):
            if isinstance(opt, tuple):
                status = opt
            else:
                returns.append(opt)
        extended = True
    return c.List(reference, patterns, selection, tuple(returns), status, extended)


def _list_return(cur: Cursor) -> str | tuple[str, ...]:
    opt = cur.keyword()
    if opt == "STATUS":  # RFC 5819 §2
        cur.sp()
        return _status_items(cur)
    if opt not in LIST_RETURN:
        raise cur.fail("unknown LIST return option")
    return opt


def _lsub(cur: Cursor) -> c.Lsub:  # RFC 3501 §6.3.9
    cur.sp()
    reference = cur.decode_name(cur.astring())
    cur.sp()
    return c.Lsub(reference, cur.list_mailbox())


def _status_items(cur: Cursor) -> tuple[str, ...]:
    items = cur.plist(cur.keyword, min_items=1)
    if any(i not in c.STATUS_ITEMS for i in items):
        raise cur.fail("unknown status item")
    return items


def _status(cur: Cursor) -> c.Status:  # RFC 3501 §6.3.10
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    return c.Status(mailbox, _status_items(cur))


MAX_APPEND_MESSAGES = 1000  # messages in one MULTIAPPEND (RFC 3502)


def _append(cur: Cursor) -> c.Append | c.MultiAppend:  # RFC 3501 §6.3.11
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    messages = [_append_message(cur, mailbox)]
    while cur.maybe(b" "):  # RFC 3502 §6: append = "APPEND" SP mailbox 1*append-message
        if len(messages) >= MAX_APPEND_MESSAGES:
            raise cur.fail(f"more than {MAX_APPEND_MESSAGES} messages in one APPEND")
        messages.append(_append_message(cur, mailbox))
    return messages[0] if len(messages) == 1 else c.MultiAppend(mailbox, tuple(messages))


def _append_message(cur: Cursor, mailbox: str) -> c.Append:
    flags: tuple[str, ...] = ()
    when = None
    if cur.peek() == b"(":
        flags = cur.plist(cur.flag)
        cur.sp()
    if cur.peek() == b'"':
        when = cur.date_time()
        cur.sp()
    if cur.peek_keyword() == "UTF8":  # RFC 6855 §4: UTF8 (literal8)
        cur.pos += 4
        cur.expect(b" (")
        message, is8 = cur.literal(allow8=True)
        if not is8:
            raise cur.fail("UTF8 needs literal8")
        cur.expect(b")")
        return c.Append(mailbox, message, flags, when, True, True)
    message, is8 = cur.literal(allow8=True)  # RFC 3516 §4.4 literal8
    return c.Append(mailbox, message, flags, when, is8)


def _uid_expunge(cur: Cursor) -> c.UidExpunge:  # RFC 4315 §2.1
    cur.sp()
    return c.UidExpunge(cur.sequence_set())


# ------------------------------------------------------------------ SEARCH (RFC 3501 §6.4.4, RFC 4731)

SEARCH_RETURN = {"MIN", "MAX", "ALL", "COUNT", "SAVE"}  # RFC 4731 §3.1, RFC 5182 §2.1


def _search(uid: bool) -> Parser:
    def parse(cur: Cursor) -> c.Search:
        cur.sp()
        returns = sort_syntax.return_options(cur, SEARCH_RETURN, "SEARCH")  # RFC 4731 §3
        if cur.peek_keyword() == "CHARSET":
            cur.pos += 7
            cur.sp()
            charset = cur.astring().decode("ascii", "replace").upper()
            if charset not in SEARCH_CHARSETS:
                raise BadCharsetError("", charset)
            cur.charset = charset
            cur.sp()
        keys = [search_key(cur)]
        while cur.maybe(b" "):
            keys.append(search_key(cur))
        criteria = keys[0] if len(keys) == 1 else c.SearchAnd(tuple(keys))
        return c.Search(criteria, cur.charset, uid, returns)

    return parse


# ------------------------------------------------------------------ FETCH / STORE / COPY / MOVE


def _fetch(uid: bool) -> Parser:
    def parse(cur: Cursor) -> c.Fetch:  # RFC 3501 §6.4.5
        cur.sp()
        seqs = cur.sequence_set()
        cur.sp()
        macro = cur.peek_keyword()
        if macro in c.FETCH_MACROS:
            cur.pos += len(macro)
            items: tuple[c.FetchItem, ...] = tuple(c.FetchAtt(n) for n in c.FETCH_MACROS[macro])
        elif cur.peek() == b"(":
            items = cur.plist(lambda: fetch_att(cur), min_items=1)
        else:
            items = (fetch_att(cur),)
        since, vanished = None, False
        if cur.maybe(b" "):
            for name, value in cur.plist(lambda: _fetch_modifier(cur), min_items=1):
                if name == "CHANGEDSINCE" and since is None:
                    since = value
                elif name == "VANISHED" and not vanished:
                    vanished = True
                else:
                    raise cur.fail("duplicate fetch modifier")
        if vanished and (not uid or since is None):  # RFC 7162 §3.2.6
            raise cur.fail("VANISHED needs UID FETCH and CHANGEDSINCE")
        return c.Fetch(seqs, items, uid, since, vanished)

    return parse


def _fetch_modifier(cur: Cursor) -> tuple[str, int | None]:
    name = cur.keyword()
    if name == "CHANGEDSINCE":  # RFC 7162 §3.1.4.1
        cur.sp()
        return name, cur.modseq()
    if name == "VANISHED":
        return name, None
    raise cur.fail("unknown fetch modifier")


def _store(uid: bool) -> Parser:
    def parse(cur: Cursor) -> c.Store:  # RFC 3501 §6.4.6
        cur.sp()
        seqs = cur.sequence_set()
        since = None
        if cur.maybe(b" ("):  # RFC 7162 §3.1.3 store-modifier
            if cur.keyword() != "UNCHANGEDSINCE":
                raise cur.fail("unknown store modifier")
            cur.sp()
            since = cur.modseq()
            cur.expect(b")")
        cur.sp()
        m = cur.match(_STORE_ATT, "FLAGS")
        mode = {b"": "replace", b"+": "add", b"-": "remove"}[m.group(1)]
        cur.sp()
        if cur.peek() == b"(":
            flags = cur.plist(cur.flag)
        else:
            flag_list = [cur.flag()]
            while cur.maybe(b" "):
                flag_list.append(cur.flag())
            flags = tuple(flag_list)
        return c.Store(seqs, mode, flags, bool(m.group(2)), uid, since)  # type: ignore[arg-type]

    return parse


def _copy_move(cls: type[c.Copy] | type[c.Move], uid: bool) -> Parser:
    def parse(cur: Cursor) -> c.CommandBody:  # RFC 3501 §6.4.7, RFC 6851 §3.1
        cur.sp()
        seqs = cur.sequence_set()
        cur.sp()
        return cls(seqs, cur.mailbox(), uid)

    return parse


# ------------------------------------------------------------------ ID, ENABLE, QUOTA, ACL


def _id(cur: Cursor) -> c.Id:  # RFC 2971 §3.1
    cur.sp()
    if cur.peek_keyword() == "NIL":
        cur.pos += 3
        return c.Id(None)

    def pair() -> tuple[str, str | None]:
        key = cur.string().decode("utf-8", "surrogateescape")
        cur.sp()
        value = cur.nstring()
        return key, None if value is None else value.decode("utf-8", "surrogateescape")

    # Lenient on spaces inside the parentheses: aioimaplib writes ID ( "name" "x" ).
    cur.expect(b"(")
    pairs: list[tuple[str, str | None]] = []
    while True:
        while cur.maybe(b" "):
            pass
        if cur.maybe(b")"):
            return c.Id(tuple(pairs))
        if pairs and cur.buf[cur.pos - 1:cur.pos] != b" ":
            raise cur.fail("expected SP")
        pairs.append(pair())


def _enable(cur: Cursor) -> c.Enable:  # RFC 5161 §3.1
    names = []
    while cur.maybe(b" "):
        names.append(cur.keyword())
    if not names:
        raise cur.fail("ENABLE needs a capability")
    return c.Enable(tuple(names))


def _compress(cur: Cursor) -> c.Compress:  # RFC 4978 §5: "COMPRESS" SP algorithm
    cur.sp()
    return c.Compress(cur.keyword())


def _getquota(cur: Cursor) -> c.GetQuota:
    cur.sp()
    return c.GetQuota(cur.text())


def _setquota(cur: Cursor) -> c.SetQuota:  # RFC 9208 §4.4
    cur.sp()
    root = cur.text()
    cur.sp()

    def resource() -> tuple[str, int]:
        name = cur.keyword()
        cur.sp()
        return name, cur.number(0, MAX_NUMBER64)

    return c.SetQuota(root, cur.plist(resource))


def _mailbox_identifier(cur: Cursor) -> tuple[str, str]:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    return mailbox, cur.text()


def _setacl(cur: Cursor) -> c.SetAcl:  # RFC 4314 §3.1
    mailbox, identifier = _mailbox_identifier(cur)
    cur.sp()
    rights = cur.text()
    if not _RIGHTS.fullmatch(rights):
        raise cur.fail("bad rights")
    mode = {"+": "add", "-": "remove"}.get(rights[:1], "replace")
    return c.SetAcl(mailbox, identifier, rights.lstrip("+-"), mode)  # type: ignore[arg-type]


def _acl_pair(cls: type[c.DeleteAcl] | type[c.ListRights]) -> Parser:
    return lambda cur: cls(*_mailbox_identifier(cur))


COMMANDS: dict[str, Parser] = {
    "CAPABILITY": _no_args(c.Capability), "NOOP": _no_args(c.Noop), "LOGOUT": _no_args(c.Logout),
    "STARTTLS": _no_args(c.StartTLS), "AUTHENTICATE": _authenticate, "LOGIN": _login,
    "SELECT": _select(c.Select), "EXAMINE": _select(c.Examine), "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete), "RENAME": _rename, "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe), "LIST": _list, "LSUB": _lsub, "STATUS": _status,
    "APPEND": _append, "CHECK": _no_args(c.Check), "CLOSE": _no_args(c.Close),
    "UNSELECT": _no_args(c.Unselect), "EXPUNGE": _no_args(c.Expunge), "SEARCH": _search(False),
    "FETCH": _fetch(False), "STORE": _store(False), "COPY": _copy_move(c.Copy, False),
    "MOVE": _copy_move(c.Move, False), "IDLE": _no_args(c.Idle), "NAMESPACE": _no_args(c.Namespace),
    "ID": _id, "ENABLE": _enable, "COMPRESS": _compress, "GETQUOTA": _getquota, "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _setquota, "SETACL": _setacl, "DELETEACL": _acl_pair(c.DeleteAcl),
    "GETACL": _one_mailbox(c.GetAcl), "LISTRIGHTS": _acl_pair(c.ListRights), "MYRIGHTS": _one_mailbox(c.MyRights),
    # RFC 3501 §6.4.8 UID; RFC 4315 §2.1 UID EXPUNGE; RFC 6851 UID MOVE
    "UID COPY": _copy_move(c.Copy, True), "UID MOVE": _copy_move(c.Move, True), "UID FETCH": _fetch(True),
    "UID SEARCH": _search(True), "UID STORE": _store(True), "UID EXPUNGE": _uid_expunge,
    **sort_syntax.COMMANDS,  # RFC 5256 SORT, THREAD and their UID forms
}  # fmt: skip
COMMAND_NAMES = frozenset(COMMANDS)


def _head(cur: Cursor) -> tuple[str, str]:
    """tag SP command-name (RFC 3501 §9 command)."""
    tag = cur.match(_TAG, "tag").group().decode("ascii")
    try:
        cur.sp()
        name = cur.keyword()
        if name == "UID":
            cur.sp()
            name = "UID " + cur.keyword()
    except SyntaxErr as exc:
        exc.tag = tag
        raise
    if name not in COMMANDS:
        raise SyntaxErr(f"unknown command {name[:40]}", tag)
    return tag, name


# Commands whose grammar has no string: a literal announced on them is an error before any "+".
_NO_LITERAL = {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE",
               "IDLE", "NAMESPACE", "AUTHENTICATE", "ENABLE", "UID EXPUNGE", "COMPRESS"}  # fmt: skip


def parse_prefix(first_line: bytes) -> tuple[str | None, str | None, str | None]:
    """(tag, command name, error) from a command's first line, checked before any "+" is sent."""
    try:
        tag, name = _head(Cursor(first_line, {}))
    except SyntaxErr as exc:
        return exc.tag, None, str(exc)
    if name in _NO_LITERAL:
        return tag, name, f"{name} takes no literal"
    return tag, name, None


def parse_command(text: bytes, literals: dict[int, tuple[bytes, bool]], *, utf8_names: bool = False):
    """Parse one whole command; return (tag, body) or raise SyntaxErr / BadCharsetError carrying the tag."""
    cur = Cursor(text, literals, utf8_names)
    tag: str | None = None
    try:
        tag, name = _head(cur)
        body = COMMANDS[name](cur)
        cur.end()
        return tag, body
    except BadCharsetError as exc:
        exc.tag = tag or ""
        raise
    except SyntaxErr as exc:
        exc.tag = exc.tag or tag
        raise
    except ValueError as exc:  # int / date / base64 / codec range checks (binascii.Error is a ValueError)
        raise SyntaxErr(f"invalid value: {exc}", tag) from None
