"""SEARCH evaluation (RFC 3501 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 7162 MODSEQ) over the selected view.

Implementation notes
- BODY and TEXT are case-insensitive substrings (RFC 3501 §6.4.4): the store's substring
  index (trigrams of the folded header and body text, mailboxes/substring.py) answers them;
  BODY never sees the header, TEXT sees every header field, not only subject and addresses.
- FROM, TO, CC and BCC match the envelope's parsed addresses ("name <mailbox@host>", the
  comments and folding gone), kept beside the blob (RenderCache); HEADER <field> and SUBJECT
  are case-insensitive substrings of the decoded header text. A Chinese needle that is one
  run first narrows the candidates through the word index.
- The string is already decoded from the SEARCH CHARSET by the parser (UTF-8, US-ASCII,
  GB2312/GBK/GB18030 and more, syntax.SEARCH_CHARSETS), so the index sees Unicode.
- Everything else (flags, dates, sizes, sequence and UID sets, MODSEQ) is evaluated over the
  columns the view holds; internal dates, sizes and blobs are read first when a key needs
  them (cache.load_facts), once per selection.
- One key costs at most a pass over the mailbox; between keys the loop is given to other
  sessions once BREATHE_AFTER seconds have gone since the last yield (``_breathe``), so 500
  keys (syntax.MAX_SEARCH_KEYS) on 10,000 messages never stall it, however slow the machine
  (or a tracer) makes one pass. The facts are read once per search, not once per key.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from mailboxes.charsets import decode_header_value
from mailboxes.mime import SEARCH_HEADERS, header_fields
from mailboxes.model import FLAG_NAMES, FolderRef
from mailboxes.search import is_one_token

from . import commands as c
from .cache import ADDRESS_KEYS, RenderCache, fold, load_facts
from .selected import BadSequence, SelectedMailbox

# RFC 3501 §6.4.4 header keys and the index column that holds their words
_INDEX_COLUMN = {"subject": "subject", "from": "addrs", "to": "addrs", "cc": "addrs", "bcc": "addrs",
                 "sender": "addrs", "reply-to": "addrs"}  # fmt: skip
_FLAG_BITS = {name: int(bit) for name, bit in FLAG_NAMES.items()}
BREATHE_AFTER = 0.01  # seconds of evaluation after which the next key first yields to the event loop
_SEP = "\x00"  # joins a message's values of one header field; no folded needle from a client holds it


@dataclass
class SearchContext:
    view: SelectedMailbox
    store: object
    cache: RenderCache
    ref: FolderRef
    saved: list[int] = field(default_factory=list)  # RFC 5182 "$"
    used_modseq: bool = False
    _all: frozenset[int] | None = None
    _columns: dict[tuple[str, bool], list[str]] = field(default_factory=dict)  # (field, addresses) -> per message
    _since: float = field(default_factory=time.perf_counter)  # when the search last yielded to the loop
    _facts_loaded: bool = False

    @property
    def everything(self) -> frozenset[int]:
        if self._all is None:
            self._all = frozenset(range(self.view.exists))
        return self._all


async def evaluate(ctx: SearchContext, key: c.SearchKey) -> set[int]:
    """The indexes (seq - 1) of the messages matching ``key``."""
    texts: dict[c.SearchKey, set[int]] = {}
    await _resolve_leaves(ctx, key, texts)
    return await _eval(ctx, key, texts)


async def _breathe(ctx: SearchContext) -> None:
    """Called once per key (each up to a pass over the mailbox): after BREATHE_AFTER, let the loop run others."""
    if time.perf_counter() - ctx._since >= BREATHE_AFTER:
        await asyncio.sleep(0)
        ctx._since = time.perf_counter()


async def _resolve_leaves(ctx: SearchContext, key: c.SearchKey, out: dict) -> None:
    """Answer the keys that need the store (text and sent dates) before the pure evaluation."""
    if isinstance(key, (c.SearchNot,)):
        await _resolve_leaves(ctx, key.key, out)
    elif isinstance(key, c.SearchOr):
        await _resolve_leaves(ctx, key.left, out)
        await _resolve_leaves(ctx, key.right, out)
    elif isinstance(key, c.SearchAnd):
        for k in key.keys:
            await _resolve_leaves(ctx, k, out)
    elif key not in out:
        await _breathe(ctx)
        if _needs_facts(key) and not ctx._facts_loaded:
            await load_facts(ctx.store, ctx.ref, ctx.view, range(ctx.view.exists))  # type: ignore[arg-type]
            ctx._facts_loaded = True
        if isinstance(key, c.SearchHeader):
            out[key] = await _header(ctx, key.field, key.value, key.by_name)
        elif isinstance(key, c.SearchText):
            out[key] = await _text(ctx, key.where, key.value)
        elif isinstance(key, c.SearchDate) and key.field == "sent":
            out[key] = await _sent(ctx, key)


def _needs_facts(key: c.SearchKey) -> bool:
    """Whether a leaf reads the internal date, size or blob of the messages."""
    return isinstance(key, (c.SearchHeader, c.SearchDate, c.SearchSize))


def _indexes(ctx: SearchContext, uids) -> set[int]:
    view = ctx.view
    return {i for u in uids if (i := view.index_of(u)) is not None}


async def _header(ctx: SearchContext, name: str, value: str, by_name: bool = False) -> set[int]:
    view = ctx.view
    needle = fold(value)
    candidates: set[int] | None = None
    column = _INDEX_COLUMN.get(name)
    # The index finds any run of Chinese characters but English only by word prefix, so
    # a Latin needle ("port" in "report", "hang" in "zhang") is checked against every
    # message's folded header (RFC 3501 §6.4.4: substring); the header cache makes that cheap.
    if column is not None and needle and not needle.isascii() and is_one_token(needle):
        uids = await ctx.store.search_text(ctx.ref, column, value)  # type: ignore[attr-defined]
        if uids is not None:
            candidates = _indexes(ctx, uids)
    idx = sorted(candidates) if candidates is not None else list(range(view.exists))
    if not idx:
        return set()
    addresses = name in ADDRESS_KEYS and not by_name  # RFC 3501 §6.4.4: the envelope's parsed addresses
    if candidates is None and (addresses or name in SEARCH_HEADERS) and _SEP not in needle:
        values = await _header_column(ctx, name, addresses)  # every message's values, joined once
        return {i for i, v in enumerate(values) if needle in v}
    partition = ctx.ref.partition
    blob_ids = [view.fact(i).blob_id for i in idx]
    rendered = await ctx.cache.rendered(partition, blob_ids)
    if addresses:
        return {i for i, bid in zip(idx, blob_ids)
                if (r := rendered.get(bid)) is not None and any(k == name and needle in v for k, v in r.addresses)}
    if name in SEARCH_HEADERS:
        out = set()
        for i, bid in zip(idx, blob_ids):
            r = rendered.get(bid)
            if r is not None and any(k == name and needle in v for k, v in r.headers):
                out.add(i)
        return out
    # Any other field: read the raw header block (rare; RFC 3501 §6.4.4 HEADER field-name string).
    raws = await ctx.store.raw_many(partition, blob_ids)  # type: ignore[attr-defined]
    out = set()
    for i, bid in zip(idx, blob_ids):
        r, raw = rendered.get(bid), raws.get(bid)
        if r is None or raw is None:
            continue
        block = header_fields(raw[:r.header_end], [name])
        if block.strip() and _field_contains(block, needle):
            out.add(i)
    return out


async def _header_column(ctx: SearchContext, name: str, addresses: bool = False) -> list[str]:
    """One string per message: its folded ``name`` values (or parsed addresses) joined by _SEP (memoised)."""
    column = ctx._columns.get((name, addresses))
    if column is None:
        view = ctx.view
        blob_ids = [view.fact(i).blob_id for i in range(view.exists)]
        rendered = await ctx.cache.rendered(ctx.ref.partition, blob_ids)
        column = []
        for bid in blob_ids:
            r = rendered.get(bid)
            pairs = (r.addresses if addresses else r.headers) if r is not None else ()
            column.append(_SEP.join(v for k, v in pairs if k == name))
        ctx._columns[(name, addresses)] = column
    return column


def _field_contains(block: bytes, needle: str) -> bool:
    for line in block.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ").split(b"\r\n"):
        if b":" in line:
            value = line.split(b":", 1)[1].strip()
            if needle in fold(decode_header_value(value.decode("utf-8", "surrogateescape"))):
                return True
    return False


async def _text(ctx: SearchContext, where: str, value: str) -> set[int]:
    # RFC 3501 §6.4.4: BODY is the body only, TEXT the whole header and the body; both substrings.
    if not value:
        return set(ctx.everything)
    uids = await ctx.store.search_substring(ctx.ref, where, value)  # type: ignore[attr-defined]
    return _indexes(ctx, uids)


async def _sent(ctx: SearchContext, key: c.SearchDate) -> set[int]:
    view = ctx.view
    blob_ids = [view.fact(i).blob_id for i in range(view.exists)]
    rendered = await ctx.cache.rendered(ctx.ref.partition, blob_ids)
    out = set()
    for i, bid in enumerate(blob_ids):
        r = rendered.get(bid)
        if r is not None and r.sent is not None and _date_matches(r.sent.date(), key):
            out.add(i)
    return out


def _date_matches(day, key: c.SearchDate) -> bool:
    # RFC 3501 §6.4.4: dates compare disregarding time and timezone
    if key.op == "before":
        return day < key.date
    if key.op == "on":
        return day == key.date
    return day >= key.date


async def _eval(ctx: SearchContext, key: c.SearchKey, texts: dict) -> set[int]:
    await _breathe(ctx)
    if isinstance(key, c.SearchAll):
        return set(ctx.everything)
    if isinstance(key, c.SearchAnd):
        result: set[int] | None = None
        for k in key.keys:
            part = await _eval(ctx, k, texts)
            result = part if result is None else result & part
            if not result:
                return set()
        return result or set()
    if isinstance(key, c.SearchOr):
        return await _eval(ctx, key.left, texts) | await _eval(ctx, key.right, texts)
    if isinstance(key, c.SearchNot):
        return set(ctx.everything - await _eval(ctx, key.key, texts))
    return _leaf(ctx, key, texts)


def _leaf(ctx: SearchContext, key: c.SearchKey, texts: dict) -> set[int]:
    view = ctx.view
    if key in texts:
        return texts[key]
    if isinstance(key, c.SearchFlag):
        found = _flag(view, key.flag)
        return found if key.present else set(ctx.everything - found)
    if isinstance(key, c.SearchDate):  # internal date (sent dates were resolved above)
        fact = view.fact
        return {i for i in range(view.exists) if _date_matches(fact(i).internal_date.date(), key)}
    if isinstance(key, c.SearchSize):
        fact = view.fact
        if key.op == "larger":
            return {i for i in range(view.exists) if fact(i).size > key.size}
        return {i for i in range(view.exists) if fact(i).size < key.size}
    if isinstance(key, c.SearchSeq):
        try:
            return set(view.resolve(key.set, uid=key.uid, saved=ctx.saved))
        except BadSequence:  # SEARCH 1:500 in a smaller mailbox: the numbers that exist (one pass over the ranges)
            return {i for lo, hi in key.set.normalised(view.exists) for i in range(lo - 1, hi)}
    if isinstance(key, c.SearchModSeq):  # RFC 7162 §3.1.5
        ctx.used_modseq = True
        return {i for i, m in enumerate(view.modseqs) if m >= key.modseq}
    raise ValueError(f"unknown search key {key!r}")


def _flag(view: SelectedMailbox, flag: str) -> set[int]:
    if flag == "\\Recent":
        return {i for i, u in enumerate(view.uids) if u in view.recent}
    bit = _FLAG_BITS.get(flag)
    if bit is not None:
        return {i for i, f in enumerate(view.flags) if f & bit}
    if flag.startswith("\\"):
        return set()
    want = flag.lower()
    return {i for u, kws in view.kws.items() if any(k.lower() == want for k in kws)
            and (i := view.index_of(u)) is not None}


@dataclass(frozen=True)
class SearchResult:
    """What SEARCH answers: the numbers (UIDs for UID SEARCH) and, with a MODSEQ key, the highest MODSEQ."""

    numbers: list[int]
    uids: list[int]
    modseq: int | None


def result(ctx: SearchContext, found: set[int], *, uid: bool) -> SearchResult:
    view = ctx.view
    order = sorted(found)
    uids = [view.uids[i] for i in order]
    modseq = max((view.modseqs[i] for i in order), default=None) if ctx.used_modseq else None
    return SearchResult(uids if uid else [i + 1 for i in order], uids, modseq)


def esearch_saved(res: SearchResult, options: tuple[str, ...]) -> list[int]:
    """The UIDs RETURN (SAVE) keeps: only MIN/MAX when just those are asked with it (RFC 5182 §2.4)."""
    if not res.uids:
        return []
    if ("ALL" in options or "COUNT" in options) or not ({"MIN", "MAX"} & set(options)):
        return list(res.uids)
    keep = []
    if "MIN" in options:
        keep.append(res.uids[0])
    if "MAX" in options:
        keep.append(res.uids[-1])
    return sorted(set(keep))


def esearch_modseq(view: SelectedMailbox, res: SearchResult, options: tuple[str, ...]) -> int | None:
    """The MODSEQ an ESEARCH reports (RFC 4731 §3.2).

    With ALL or COUNT it is the highest of all matches; with only MIN and/or MAX it is
    the highest of the messages actually returned, not of every match.
    """
    if res.modseq is None or not res.uids or "ALL" in options or "COUNT" in options:
        return res.modseq
    picked = ([res.uids[0]] if "MIN" in options else []) + ([res.uids[-1]] if "MAX" in options else [])
    if not picked:
        return res.modseq
    return max(view.modseqs[i] for u in picked if (i := view.index_of(u)) is not None)

