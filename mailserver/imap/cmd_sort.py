"""Handlers for SORT, UID SORT and ESORT (RFC 5256 §3, RFC 5267 §3) and THREAD / UID THREAD (RFC 5256 §3).

Implementation notes
- The search criteria are evaluated by search.py exactly as SEARCH does; only the matches
  are sorted or threaded.
- Per-message facts come from the RenderCache (the stored parse, never the body), loaded
  RENDER_CHUNK messages per step with a yield to the event loop between steps; keys that
  need no parse (ARRIVAL, SIZE) load nothing.
- From SORT_IN_THREAD matches on, the pure sort or thread runs in a worker thread so the
  event loop keeps serving other sessions while 10,000 messages are ordered.
- SORT and THREAD answer with sequence numbers, so no EXPUNGE is sent while answering
  them (session.NO_EXPUNGE, as for SEARCH, RFC 3501 §7.4.1); their UID forms may carry it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from . import commands as c
from . import responses as r
from .cache import load_facts
from .search import SearchContext, evaluate
from .sorting import EMPTY_FACTS, MessageFacts, SortRecord, sort_order
from .states import Ok, Selected
from .threads import thread as build_threads
from .threads import thread_lists

if TYPE_CHECKING:
    from .session import Session

RENDER_CHUNK = 500  # stored parses loaded between two yields to the event loop
SORT_IN_THREAD = 2000  # matches from which the sort or thread runs in a worker thread
_NO_PARSE_KEYS = frozenset({"ARRIVAL", "SIZE"})

T = TypeVar("T")


def _selected(s: Session) -> Selected:
    st = s.state
    assert isinstance(st, Selected)  # the dispatch table allows these commands only when selected
    return st


async def _matches(s: Session, st: Selected, criteria: c.SearchKey) -> tuple[SearchContext, list[int]]:
    await s.sync(allow_expunge=False, checked=True)  # as SEARCH: other sessions' flag changes count now
    ctx = SearchContext(st.view, s.services.store, s.services.cache, st.mailbox.folder.ref, saved=s.saved)
    found = await evaluate(ctx, criteria)
    if ctx.used_modseq:
        s.enable_condstore()  # RFC 7162 §3.1: SORT with MODSEQ enables CONDSTORE
    return ctx, sorted(found)


async def _records(s: Session, st: Selected, idx: list[int], *, facts: bool) -> list[SortRecord]:
    """One SortRecord per index (seq - 1), in sequence order."""
    view = st.view
    await load_facts(s.services.store, st.mailbox.folder.ref, view, idx)
    known: dict[int, MessageFacts] = {}
    if facts:
        cache, partition = s.services.cache, st.mailbox.folder.ref.partition
        for k in range(0, len(idx), RENDER_CHUNK):
            if k:
                await asyncio.sleep(0)
            rendered = await cache.rendered(partition, [view.fact(i).blob_id for i in idx[k:k + RENDER_CHUNK]])
            known.update((bid, e.facts) for bid, e in rendered.items())
    fact = view.fact
    return [SortRecord(i + 1, (f := fact(i)).internal_date.timestamp(), f.size, known.get(f.blob_id, EMPTY_FACTS))
            for i in idx]


async def _off_loop(n: int, fn: Callable[..., T], *args) -> T:
    return await asyncio.to_thread(fn, *args) if n >= SORT_IN_THREAD else fn(*args)


def _in_order(numbers: Sequence[int]) -> c.SequenceSet:
    """RFC 5267 §3.2 ALL in sort order: ascending runs become ranges, nothing is reordered."""
    runs: list[tuple[int | None, int | None]] = []
    for n in numbers:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return c.SequenceSet(tuple(runs))


async def sort(s: Session, tag: str, cmd: c.Sort) -> Ok:  # RFC 5256 §3, RFC 5267 §3 (ESORT), RFC 5957
    st = _selected(s)
    view = st.view
    ctx, idx = await _matches(s, st, cmd.criteria)
    need_facts = any(key not in _NO_PARSE_KEYS for key, _ in cmd.keys)
    records = await _records(s, st, idx, facts=need_facts)
    order = await _off_loop(len(records), sort_order, records, cmd.keys)
    ordered = [idx[p] for p in order]
    numbers = [view.uids[i] for i in ordered] if cmd.uid else [i + 1 for i in ordered]
    opts = cmd.return_options
    if opts is None:
        modseq = max((view.modseqs[i] for i in idx), default=None) if ctx.used_modseq else None
        s.wire.write(bytes(r.SearchData(numbers, modseq, b"SORT")))
        return Ok(f"{cmd.name} completed")
    opts = opts or ("ALL",)  # RFC 4731 §3.1, by reference from RFC 5267 §3.2: RETURN () means ALL
    only_ends = not ({"ALL", "COUNT"} & set(opts))
    ends = (ordered[:1] if "MIN" in opts else []) + (ordered[-1:] if "MAX" in opts else [])
    chosen = ends if only_ends and ends else ordered
    if "SAVE" in opts:  # RFC 5182 §2.4: the saved result is a set of UIDs
        s.saved = sorted({view.uids[i] for i in chosen})
    if set(opts) != {"SAVE"}:
        modseq = max((view.modseqs[i] for i in chosen), default=None) if ctx.used_modseq else None
        s.wire.write(bytes(r.ESearchData(
            tag=tag, uid=cmd.uid,
            min=numbers[0] if numbers and "MIN" in opts else None,  # the first message in sort order
            max=numbers[-1] if numbers and "MAX" in opts else None,  # the last
            count=len(numbers) if "COUNT" in opts else None,
            all=_in_order(numbers) if numbers and "ALL" in opts else None, modseq=modseq)))
    return Ok(f"{cmd.name} completed")


async def thread(s: Session, tag: str, cmd: c.Thread) -> Ok:  # RFC 5256 §3 THREAD
    st = _selected(s)
    view = st.view
    _, idx = await _matches(s, st, cmd.criteria)
    records = await _records(s, st, idx, facts=True)
    uids = view.uids

    def run() -> bytes:
        roots = build_threads(cmd.algorithm, records)
        number = (lambda rec: uids[rec.seq - 1]) if cmd.uid else (lambda rec: rec.seq)
        return thread_lists(roots, number)

    s.wire.write(bytes(r.ThreadData(await _off_loop(len(records), run))))
    return Ok(f"{cmd.name} completed")
