"""Client wire form of typed commands, the inverse of the grammar: ``parse(command_to_bytes(cmd)) == cmd``."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from . import commands as c
from .mutf7 import encode_mutf7
from .responses import MONTHS, date_time, quoted
from .syntax import SEARCH_CHARSETS

__all__ = ["command_to_bytes", "command_to_chunks"]

_ASTRING_SAFE = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\]+")
_LIST_SAFE = re.compile(rb"[^\x00-\x20\x7f-\xff(){\"\\]+")
_QUOTABLE = re.compile(rb"[^\x00\r\n\x80-\xff]{0,1024}")


class _Writer:
    """Collects the command; each synchronising literal closes a chunk (the client then awaits "+")."""

    def __init__(self, literal_plus: bool, utf8_names: bool):
        self.plus, self.utf8 = literal_plus, utf8_names
        self.chunks: list[bytes] = []
        self.parts: list[bytes] = []
        self.charset: str | None = None

    def raw(self, *data: bytes) -> None:
        self.parts.extend(data)

    def literal(self, data: bytes, eight: bool = False) -> None:  # RFC 3501 §4.3, RFC 7888 §3
        self.parts.append(b"%s{%d%s}\r\n" % (b"~" if eight else b"", len(data), b"+" if self.plus else b""))
        if not self.plus:
            self.chunks.append(b"".join(self.parts))
            self.parts = []
        self.parts.append(data)

    def string(self, data: bytes, atom: re.Pattern[bytes] | None = _ASTRING_SAFE) -> None:
        if atom is not None and atom.fullmatch(data) and data.upper() != b"NIL":
            self.parts.append(data)
        elif _QUOTABLE.fullmatch(data):
            self.parts.append(quoted(data))
        else:
            self.literal(data)

    def text(self, value: str, atom: re.Pattern[bytes] | None = _ASTRING_SAFE) -> None:
        self.string(value.encode("utf-8", "surrogateescape"), atom)

    def mailbox(self, name: str, atom: re.Pattern[bytes] = _ASTRING_SAFE) -> None:
        self.string(name.encode("utf-8") if self.utf8 else encode_mutf7(name), atom)

    def search_text(self, value: str) -> None:
        codec = SEARCH_CHARSETS.get(self.charset or "UTF-8", "utf-8")
        self.string(value.encode(codec, "surrogateescape" if codec == "utf-8" else "strict"))

    def plist(self, items, write: Callable[[object], None]) -> None:
        self.raw(b"(")
        for i, item in enumerate(items):
            if i:
                self.raw(b" ")
            write(item)
        self.raw(b")")

    def finish(self) -> list[bytes]:
        self.parts.append(b"\r\n")
        self.chunks.append(b"".join(self.parts))
        return self.chunks


def command_to_chunks(cmd: c.Command, *, literal_plus: bool = False, utf8_names: bool = False) -> list[bytes]:
    """The command split at synchronising literals: send chunk 0, then each next chunk after a "+"."""
    w = _Writer(literal_plus, utf8_names)
    body = cmd.command
    w.raw(cmd.tag.encode("ascii"), b" ", body.name.encode("ascii"))
    _WRITERS[type(body)](w, body)
    return w.finish()


def command_to_bytes(cmd: c.Command, *, literal_plus: bool = False, utf8_names: bool = False) -> bytes:
    """The whole command as a client sends it (synchronising literals unless ``literal_plus``)."""
    return b"".join(command_to_chunks(cmd, literal_plus=literal_plus, utf8_names=utf8_names))


def _nothing(w: _Writer, body: c.CommandBody) -> None:
    pass


def _mailbox_only(w: _Writer, body) -> None:
    w.raw(b" ")
    w.mailbox(body.mailbox)


def _authenticate(w: _Writer, b: c.Authenticate) -> None:
    w.raw(b" ", b.mechanism.encode("ascii"))
    if b.initial_response is not None:  # RFC 4959 §3: "=" is an empty initial response
        w.raw(b" ", base64.b64encode(b.initial_response) or b"=")


def _login(w: _Writer, b: c.Login) -> None:
    w.raw(b" ")
    w.text(b.username)
    w.raw(b" ")
    w.text(b.password)


def _select(w: _Writer, b: c.Select | c.Examine) -> None:
    _mailbox_only(w, b)
    params = [b"CONDSTORE"] if b.condstore else []
    if q := b.qresync:  # RFC 7162 §3.2.5
        inner = b"%d %d" % (q.uidvalidity, q.modseq)
        if q.known_uids is not None:
            inner += b" " + bytes(q.known_uids)
        if q.seq_match is not None:
            inner += b" (%s %s)" % (bytes(q.seq_match[0]), bytes(q.seq_match[1]))
        params.append(b"QRESYNC (" + inner + b")")
    if params:
        w.raw(b" (", b" ".join(params), b")")


def _create(w: _Writer, b: c.Create) -> None:
    _mailbox_only(w, b)
    if b.special_use:
        w.raw(b" (USE (", " ".join(b.special_use).encode("ascii"), b"))")


def _rename(w: _Writer, b: c.Rename) -> None:
    _mailbox_only(w, b)
    w.raw(b" ")
    w.mailbox(b.new_name)


def _list(w: _Writer, b: c.List) -> None:  # RFC 5258 §3
    w.raw(b" ")
    if b.extended:
        w.raw(b"(", " ".join(b.selection_options).encode("ascii"), b") ")
    w.mailbox(b.reference)
    w.raw(b" ")
    if b.extended:
        w.plist(b.patterns, lambda p: w.mailbox(p, _LIST_SAFE))
    else:
        w.mailbox(b.patterns[0], _LIST_SAFE)
    if b.return_options or b.status_items is not None:
        opts = [o.encode("ascii") for o in b.return_options]
        if b.status_items is not None:
            opts.append(b"STATUS (" + " ".join(b.status_items).encode("ascii") + b")")
        w.raw(b" RETURN (", b" ".join(opts), b")")


def _lsub(w: _Writer, b: c.Lsub) -> None:
    w.raw(b" ")
    w.mailbox(b.reference)
    w.raw(b" ")
    w.mailbox(b.pattern, _LIST_SAFE)


def _status(w: _Writer, b: c.Status) -> None:
    _mailbox_only(w, b)
    w.raw(b" (", " ".join(b.items).encode("ascii"), b")")


def _append(w: _Writer, b: c.Append, mailbox: bool = True) -> None:  # RFC 3501 §6.3.11, RFC 6855 §4
    if mailbox:
        _mailbox_only(w, b)
    if b.flags:
        w.raw(b" (", " ".join(b.flags).encode("ascii"), b")")
    if b.internal_date is not None:
        w.raw(b" ", date_time(b.internal_date))
    w.raw(b" UTF8 (" if b.utf8 else b" ")
    w.literal(b.message, eight=b.literal8 or b.utf8)
    if b.utf8:
        w.raw(b")")


def _uid_expunge(w: _Writer, b: c.UidExpunge) -> None:
    w.raw(b" ", bytes(b.uids))


_FLAG_KEYS = {
    ("\\Answered", True): b"ANSWERED", ("\\Deleted", True): b"DELETED", ("\\Draft", True): b"DRAFT",
    ("\\Flagged", True): b"FLAGGED", ("\\Seen", True): b"SEEN", ("\\Recent", True): b"RECENT",
    ("\\Answered", False): b"UNANSWERED", ("\\Deleted", False): b"UNDELETED", ("\\Draft", False): b"UNDRAFT",
    ("\\Flagged", False): b"UNFLAGGED", ("\\Seen", False): b"UNSEEN", ("\\Recent", False): b"OLD",
}  # fmt: skip
_DATE_KEYS = {
    ("internal", "before"): b"BEFORE", ("internal", "on"): b"ON", ("internal", "since"): b"SINCE",
    ("sent", "before"): b"SENTBEFORE", ("sent", "on"): b"SENTON", ("sent", "since"): b"SENTSINCE",
}  # fmt: skip
_HEADER_KEYS = {"bcc", "cc", "from", "subject", "to"}


def _search_key(w: _Writer, k: c.SearchKey, top: bool = False) -> None:  # RFC 3501 §6.4.4
    if isinstance(k, c.SearchAnd):
        if top:
            for i, sub in enumerate(k.keys):
                w.raw(b" " if i else b"")
                _search_key(w, sub)
        else:
            w.plist(k.keys, lambda sub: _search_key(w, sub))  # type: ignore[arg-type]
    elif isinstance(k, c.SearchAll):
        w.raw(b"ALL")
    elif isinstance(k, c.SearchFlag):
        key = _FLAG_KEYS.get((k.flag, k.present))
        w.raw(key if key else (b"KEYWORD " if k.present else b"UNKEYWORD ") + k.flag.encode("ascii"))
    elif isinstance(k, c.SearchDate):
        d = k.date
        w.raw(_DATE_KEYS[k.field, k.op], b" %d-%s-%04d" % (d.day, MONTHS[d.month - 1], d.year))
    elif isinstance(k, c.SearchSize):
        w.raw(b"%s %d" % (k.op.upper().encode("ascii"), k.size))
    elif isinstance(k, c.SearchHeader):
        if k.field in _HEADER_KEYS and not k.by_name:
            w.raw(k.field.upper().encode("ascii"), b" ")
        else:
            w.raw(b"HEADER ")
            w.text(k.field)
            w.raw(b" ")
        w.search_text(k.value)
    elif isinstance(k, c.SearchText):
        w.raw(k.where.upper().encode("ascii"), b" ")
        w.search_text(k.value)
    elif isinstance(k, c.SearchSeq):
        w.raw(b"UID " if k.uid else b"", bytes(k.set))
    elif isinstance(k, c.SearchModSeq):  # RFC 7162 §3.1.5
        w.raw(b"MODSEQ ")
        if k.entry is not None:
            w.raw(quoted(b"/flags/" + k.entry.encode("ascii")), b" ", (k.entry_type or "all").encode("ascii"), b" ")
        w.raw(b"%d" % k.modseq)
    elif isinstance(k, c.SearchNot):
        w.raw(b"NOT ")
        _search_key(w, k.key)
    elif isinstance(k, c.SearchOr):
        w.raw(b"OR ")
        _search_key(w, k.left)
        w.raw(b" ")
        _search_key(w, k.right)
    else:
        raise TypeError(f"not a search key: {k!r}")


def _search(w: _Writer, b: c.Search) -> None:
    if b.return_options is not None:  # RFC 4731 §3
        w.raw(b" RETURN (", " ".join(b.return_options).encode("ascii"), b")")
    if b.charset is not None:
        w.raw(b" CHARSET ", b.charset.encode("ascii"))
        w.charset = b.charset
    w.raw(b" ")
    _search_key(w, b.criteria, top=True)


def _sort(w: _Writer, b: c.Sort | c.Thread) -> None:  # RFC 5256 §5, RFC 5267 §4
    if isinstance(b, c.Thread):
        w.raw(b" ", b.algorithm.encode("ascii"))
    else:
        if b.return_options is not None:
            w.raw(b" RETURN (", " ".join(b.return_options).encode("ascii"), b")")
        w.raw(b" (", " ".join(("REVERSE " if rev else "") + key for key, rev in b.keys).encode("ascii"), b")")
    w.raw(b" ", b.charset.encode("ascii"), b" ")
    w.charset = b.charset
    _search_key(w, b.criteria, top=True)


def _multiappend(w: _Writer, b: c.MultiAppend) -> None:  # RFC 3502 §6
    _mailbox_only(w, b)
    for m in b.messages:
        _append(w, m, mailbox=False)


def _fetch_item(w: _Writer, item: c.FetchItem) -> None:  # RFC 3501 §6.4.5, RFC 3516 §4.2
    if isinstance(item, c.FetchAtt):
        w.raw(item.name.encode("ascii"))
    elif isinstance(item, c.FetchBinarySize):
        w.raw(item.response_name())
    else:
        s = item.section
        w.raw(b"BINARY" if item.binary else b"BODY", b".PEEK[" if item.peek else b"[")
        w.raw(b".".join(b"%d" % p for p in s.part))
        if s.text:
            w.raw(b"." if s.part else b"", s.text.encode("ascii"))
        if s.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            w.raw(b" ")
            w.plist(s.fields, w.text)  # type: ignore[arg-type]
        w.raw(b"]")
        if item.partial:
            w.raw(b"<%d.%d>" % item.partial)


def _fetch(w: _Writer, b: c.Fetch) -> None:
    w.raw(b" ", bytes(b.sequence_set), b" ")
    w.plist(b.items, lambda item: _fetch_item(w, item))  # type: ignore[arg-type]
    mods = [b"CHANGEDSINCE %d" % b.changed_since] if b.changed_since is not None else []
    if b.vanished:
        mods.append(b"VANISHED")
    if mods:  # RFC 7162 §3.1.4
        w.raw(b" (", b" ".join(mods), b")")


def _store(w: _Writer, b: c.Store) -> None:  # RFC 3501 §6.4.6, RFC 7162 §3.1.3
    w.raw(b" ", bytes(b.sequence_set))
    if b.unchanged_since is not None:
        w.raw(b" (UNCHANGEDSINCE %d)" % b.unchanged_since)
    sign = {"replace": b"", "add": b"+", "remove": b"-"}[b.mode]
    w.raw(b" ", sign, b"FLAGS", b".SILENT" if b.silent else b"", b" (", " ".join(b.flags).encode("ascii"), b")")


def _copy_move(w: _Writer, b: c.Copy | c.Move) -> None:
    w.raw(b" ", bytes(b.sequence_set), b" ")
    w.mailbox(b.mailbox)


def _id(w: _Writer, b: c.Id) -> None:  # RFC 2971 §3.1
    if b.params is None:
        w.raw(b" NIL")
        return
    w.raw(b" ")

    def pair(kv: tuple[str, str | None]) -> None:
        w.text(kv[0], atom=None)
        w.raw(b" ")
        if kv[1] is None:
            w.raw(b"NIL")
        else:
            w.text(kv[1], atom=None)

    w.plist(b.params, pair)  # type: ignore[arg-type]


def _enable(w: _Writer, b: c.Enable) -> None:
    w.raw(*(b" " + cap.encode("ascii") for cap in b.capabilities))


def _getquota(w: _Writer, b: c.GetQuota) -> None:
    w.raw(b" ")
    w.text(b.root)


def _setquota(w: _Writer, b: c.SetQuota) -> None:  # RFC 9208 §4.4
    _getquota(w, b)  # type: ignore[arg-type]
    w.raw(b" (", b" ".join(b"%s %d" % (n.encode("ascii"), v) for n, v in b.limits), b")")


def _acl(w: _Writer, b) -> None:  # RFC 4314 §3
    _mailbox_only(w, b)
    if hasattr(b, "identifier"):
        w.raw(b" ")
        w.text(b.identifier)
    if isinstance(b, c.SetAcl):
        w.raw(b" ")
        w.text({"replace": "", "add": "+", "remove": "-"}[b.mode] + b.rights)


def _compress(w: _Writer, b: c.Compress) -> None:
    w.raw(b" ", b.mechanism.encode("ascii"))


_WRITERS: dict[type, Callable[[_Writer, object], None]] = {
    c.Capability: _nothing, c.Noop: _nothing, c.Logout: _nothing, c.StartTLS: _nothing, c.Check: _nothing,
    c.Close: _nothing, c.Unselect: _nothing, c.Expunge: _nothing, c.Idle: _nothing, c.Namespace: _nothing,
    c.Authenticate: _authenticate, c.Login: _login, c.Select: _select, c.Examine: _select, c.Create: _create,
    c.Delete: _mailbox_only, c.Rename: _rename, c.Subscribe: _mailbox_only, c.Unsubscribe: _mailbox_only,
    c.List: _list, c.Lsub: _lsub, c.Status: _status, c.Append: _append, c.UidExpunge: _uid_expunge,
    c.Search: _search, c.Fetch: _fetch, c.Store: _store, c.Copy: _copy_move, c.Move: _copy_move, c.Id: _id,
    c.Enable: _enable, c.GetQuota: _getquota, c.GetQuotaRoot: _mailbox_only, c.SetQuota: _setquota,
    c.SetAcl: _acl, c.DeleteAcl: _acl, c.GetAcl: _acl, c.ListRights: _acl, c.MyRights: _acl,
    c.Sort: _sort, c.Thread: _sort, c.MultiAppend: _multiappend,
    c.Compress: _compress,
}  # fmt: skip
