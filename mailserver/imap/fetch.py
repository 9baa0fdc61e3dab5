"""FETCH data item assembly (RFC 3501 §6.4.5, §7.4.2; RFC 3516 BINARY; RFC 7162 MODSEQ) over the selected view.

Implementation notes
- ENVELOPE / BODY / BODYSTRUCTURE come pre-rendered from the RenderCache; sections are byte
  ranges of the raw blob taken from the stored part tree (parse once, never re-parse).
- Messages are fetched in batches bounded by count and octets, each batch written and
  drained before the next is loaded, so a FETCH of 10,000 bodies never holds them all.
- A message of RANGED_OCTETS or more is read only by the byte ranges its items need
  (`needed_ranges`: parts, BINARY of parts, BODY[]<partial>, the header), not whole: a
  client that shows a 50 MB message's text part, or downloads it in <partial> chunks as
  Thunderbird does, no longer makes the server read 50 MB for each request. `Ranges`
  stands in for the message's bytes and is sliced exactly as they would be.
- Setting \\Seen for BODY[...] (not .PEEK), RFC822 and RFC822.TEXT is the caller's job;
  it passes the indexes whose flags changed, which then carry FLAGS (RFC 3501 §6.4.5).
"""

from __future__ import annotations

import asyncio

import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailboxes.mime import BodyPart, find_part, header_fields, section_range
from mailboxes.ranges import RANGED_OCTETS as _RANGED_OCTETS
from mailboxes.ranges import Ranges, mostly, read_ranges  # noqa: F401 - Ranges: tests use fetch.Ranges
from mailboxes.offload import offload
from mailboxes.transfer import DECODE_STEP, decode_in_steps, decode_qp

from . import commands as c
from mailboxes.model import FolderRef

from .cache import FACTS_BATCH, RenderCache, Rendered, load_facts
from .responses import date_time, literal8, literal_parts
from .selected import SelectedMailbox
from .states import Bad

BATCH_MESSAGES = 500
BATCH_OCTETS = 8 << 20
FLUSH_OCTETS = 1 << 20  # response octets built before they are written and drained
# Messages rendered between two turns of the event loop. A drain returns at once while the
# socket keeps up (loopback always does), so without this a FETCH 1:* on a warm cache never
# let other sessions run: hundreds of HEADER.FIELDS on 10,000 messages held the loop 222 ms.
YIELD_MESSAGES = 64
MAX_FETCH_ITEMS = 100  # distinct data items in one FETCH (each may be a whole message)
RANGED_OCTETS = _RANGED_OCTETS  # a message this large or larger is read by the ranges its items need
LARGE_BINARY = 1 << 20  # an encoded part this large is decoded for BINARY in steps, the loop given back between
BINARY_STEP = DECODE_STEP  # encoded octets a step decodes


class Output(Protocol):
    def writelines(self, data: list[bytes]) -> None: ...

    async def drain(self) -> None: ...


class UnknownCte(Exception):
    """BINARY of a part whose Content-Transfer-Encoding we cannot decode (RFC 3516 §4.3: NO [UNKNOWN-CTE])."""


@dataclass(frozen=True)
class FetchPlan:
    items: tuple[c.FetchItem, ...]
    uid: bool  # add UID (RFC 3501 §6.4.8: UID FETCH always returns it)
    modseq: bool  # add MODSEQ (RFC 7162 §3.1.4.1 CHANGEDSINCE)
    render: frozenset[str] | None  # which of envelope/body/bodystructure to render; None: no cache entry needed
    raw: bool  # the whole message is needed
    header: bool  # only the top-level header is needed: served from the cache once read
    tree: bool
    facts: bool  # needs the messages' internal date, size or blob (loaded on demand, cache.load_facts)
    sets_seen: bool
    names: tuple[bytes | None, ...]  # each item's response name, worked out once (not once per message)
    binary_parts: tuple[tuple[int, ...], ...] = ()  # parts BINARY[] or BINARY.SIZE[] decode
    sized_parts: frozenset[tuple[int, ...]] = frozenset()  # of those, the ones only BINARY.SIZE[] asks for

    @classmethod
    def of(cls, cmd: c.Fetch) -> FetchPlan:
        """The plan for ``cmd``; an item asked twice is answered once, more than MAX_FETCH_ITEMS is BAD."""
        items = tuple({_item_key(i): i for i in reversed(cmd.items)}.values())[::-1]  # first of equals kept
        if len(items) > MAX_FETCH_ITEMS:
            raise Bad(f"Too many FETCH items (limit {MAX_FETCH_ITEMS})")
        names = {i.name for i in cmd.items if isinstance(i, c.FetchAtt)}
        bodies = [i for i in cmd.items if isinstance(i, c.FetchBody)]
        sizes = [i for i in cmd.items if isinstance(i, c.FetchBinarySize)]
        want = frozenset(n.lower() for n in names & {"ENVELOPE", "BODY", "BODYSTRUCTURE"})
        needs_entry = bool(want) or bool(names & {"RFC822.HEADER", "RFC822.TEXT"}) or any(
            b.section.text is not None and not b.section.part for b in bodies)
        render = want if needs_entry else None
        raw = bool([b for b in bodies if not _top_header(b)] or sizes or names & {"RFC822", "RFC822.TEXT"})
        header = not raw and ("RFC822.HEADER" in names or any(_top_header(b) for b in bodies))
        tree = any(b.section.part for b in bodies) or any(s.part for s in sizes)
        seen = any(not b.peek for b in bodies) or bool(names & {"RFC822", "RFC822.TEXT"})
        has_uid = "UID" in names
        has_modseq = "MODSEQ" in names
        facts = (render is not None or raw or header or tree
                 or bool(names & {"RFC822.SIZE", "INTERNALDATE"}))
        names_ = tuple(i.response_name() if isinstance(i, (c.FetchBody, c.FetchBinarySize)) else None
                       for i in items)
        whole = [b.section.part for b in bodies if b.binary and b.section.part]
        binary_parts = tuple(dict.fromkeys(whole + [s.part for s in sizes if s.part]))
        return cls(items, cmd.uid and not has_uid, cmd.changed_since is not None and not has_modseq,
                   render, raw, header, tree, facts, seen, names_, binary_parts,
                   frozenset(binary_parts) - frozenset(whole))


def _item_key(item: c.FetchItem) -> object:
    """Items that give the same response are one item (BODY[] and BODY.PEEK[] both answer BODY[])."""
    if isinstance(item, c.FetchBody):
        return (item.binary, item.section, item.partial)
    return item


def _top_header(b: c.FetchBody) -> bool:
    return not b.binary and not b.section.part and b.section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT")


def section_bytes(raw: bytes | None, r: Rendered | None, tree: BodyPart | None, sec: c.Section) -> bytes | None:
    """The octets of BODY[section] (RFC 3501 §6.4.5); None when the message has no such part.

    The top-level header comes from the cache entry when the message itself was not read.
    """
    if not sec.part:
        if sec.text is None:
            return raw
        header_end = r.header_end if r is not None else 0
        if sec.text == "TEXT":
            return raw[header_end:]  # type: ignore[index]
        header = raw[:header_end] if raw is not None else r.header  # type: ignore[union-attr]
        if sec.text == "HEADER":
            return header
        if header is None:  # the message's body went meanwhile (another session expunged it): RFC 2180 §4.1.3
            header = b""
        if r is None:
            return header_fields(header, sec.fields, exclude=sec.text == "HEADER.FIELDS.NOT")
        return r.fields(sec.text, sec.fields, header)  # type: ignore[arg-type]
    if tree is None:
        return None
    if sec.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        span = section_range(tree, sec.part, "HEADER")
        if span is None:
            return None
        return header_fields(raw[span[0]:span[1]], sec.fields, exclude=sec.text == "HEADER.FIELDS.NOT")
    span = section_range(tree, sec.part, sec.text or "")
    return None if span is None else raw[span[0]:span[1]]


def section_slice(raw: bytes | None, r: Rendered | None, tree: BodyPart | None, sec: c.Section,
                  partial: tuple[int, int] | None) -> bytes | None:
    """BODY[section]<partial> (RFC 3501 §6.4.5): a part's <start.length> is sliced from the message itself,
    so that a message read by ranges needs only those octets of the part (needed_ranges)."""
    if partial is not None and sec.part and sec.text not in ("HEADER.FIELDS", "HEADER.FIELDS.NOT") \
            and tree is not None:
        span = section_range(tree, sec.part, sec.text or "")
        if span is None:
            return None
        start, end = _partial_span(span, partial)
        return raw[start:end]  # type: ignore[index]
    if partial is not None and not sec.part and sec.text == "TEXT" and r is not None and raw is not None:
        start, end = _partial_span((r.header_end, len(raw)), partial)  # BODY[TEXT]<partial>: a preview
        return raw[start:end]
    data = section_bytes(raw, r, tree, sec)
    return None if data is None else _partial(data, partial)


def _partial_span(span: tuple[int, int], partial: tuple[int, int]) -> tuple[int, int]:
    """The octets <start.length> of the range ``span`` cover: past its end, an empty range at its end."""
    a, b = span
    start, length = partial
    return min(a + start, b), min(b, a + start + length)


def binary_bytes(raw: bytes, tree: BodyPart | None, part: tuple[int, ...],
                 decoded: Decoded | None = None) -> bytes | bytearray | None:
    """BINARY[part]: the part's body with its Content-Transfer-Encoding removed (RFC 3516 §4.2).

    ``decoded``: the message's large parts decoded beforehand in steps (decode_large_parts).
    """
    if not part:
        return raw
    if decoded is not None and part in decoded:
        got = decoded[part]
        if isinstance(got, UnknownCte):
            raise got
        return got
    node = find_part(tree, part) if tree is not None else None
    if node is None:
        return None
    data = raw[node.body_start:node.body_end]
    if node.is_multipart or node.message is not None:
        return data
    enc = (node.encoding or "7bit").lower()
    if enc in ("7bit", "8bit", "binary"):
        return data
    try:
        if enc == "base64":
            return binascii.a2b_base64(data)
        if enc == "quoted-printable":
            return decode_qp(data)  # RFC 2045 §6.7
    except (binascii.Error, ValueError):
        raise UnknownCte("the part's base64 is damaged") from None
    raise UnknownCte(f"unknown Content-Transfer-Encoding {enc}")


# part -> its decoded body, or only its decoded size (a part only BINARY.SIZE asks for), or why neither
Decoded = dict[tuple[int, ...], "bytes | bytearray | int | UnknownCte"]


def _large_encoded(tree: BodyPart | None, part: tuple[int, ...]) -> BodyPart | None:
    """The part if it is a leaf in base64 or quoted-printable of LARGE_BINARY octets or more."""
    node = find_part(tree, part) if tree is not None else None
    if node is None or node.is_multipart or node.message is not None:
        return None
    if node.body_end - node.body_start < LARGE_BINARY:
        return None
    return node if (node.encoding or "").lower() in ("base64", "quoted-printable") else None


async def decode_large_parts(raw: bytes | Ranges, tree: BodyPart | None, plan: FetchPlan,
                             cache: RenderCache, partition: str, bid: int) -> Decoded:
    """The message's large encoded parts of ``plan`` decoded in steps, each in a worker thread (offload).

    One binascii.a2b_base64 of a 20 MB attachment held the loop 75 ms, for every session, at
    each BINARY or BINARY.SIZE of it; decode_in_steps cuts that into ~1 MB steps (a few ms). The
    steps run off the loop, so a crafted quoted-printable line with no place to cut (the rest
    decoded in one call, ~55-65 ms for 20 MB) holds no session either.
    A part only BINARY.SIZE asks for is counted, not kept, and its size remembered in ``cache``:
    asked again, it is not decoded again.
    """
    out: Decoded = {}
    for part in plan.binary_parts:
        node = _large_encoded(tree, part)
        if node is None:
            continue
        size_only = part in plan.sized_parts
        known = cache.binary_size(partition, bid, part) if size_only else None
        if known is not None:
            out[part] = known
            continue
        body, count = bytearray(), 0  # grown in place: the pieces and their join were twice the part
        try:
            pieces = decode_in_steps(raw[node.body_start:node.body_end], node.encoding.lower(), BINARY_STEP)
            while (piece := await offload(next, pieces, None)) is not None:
                count += len(piece)
                if not size_only:
                    body += piece
        except (binascii.Error, ValueError):
            out[part] = UnknownCte("the part's base64 is damaged")
            continue
        cache.keep_binary_size(partition, bid, part, count)
        out[part] = count if size_only else body
    return out


def _node_range(tree: BodyPart, part: tuple[int, ...]) -> list[tuple[int, int]]:
    node = find_part(tree, part)
    return [] if node is None else [(node.body_start, node.body_end)]


def needed_ranges(plan: FetchPlan, r: Rendered | None, tree: BodyPart | None, size: int
                  ) -> list[tuple[int, int]] | None:
    """The byte ranges of a message that the plan's items slice, or None when one of them needs it whole.

    Mirrors what section_slice, binary_bytes and message_pieces slice: the header up to
    r.header_end, a part's span (section_range) or the <start.length> of it, a part's body
    (BINARY, BINARY.SIZE), and BODY[]<start.length>; RFC822, RFC822.TEXT, TEXT, BODY[] and BINARY[] take the whole.
    """
    out: list[tuple[int, int]] = []
    for item in plan.items:
        if isinstance(item, c.FetchAtt):
            if item.name in ("RFC822", "RFC822.TEXT"):
                return None
            if item.name == "RFC822.HEADER":
                if r is None:
                    return None
                out.append((0, r.header_end))
        elif isinstance(item, c.FetchBody):
            sec = item.section
            if not sec.part:
                if item.binary or (sec.text in (None, "TEXT") and item.partial is None):
                    return None
                if sec.text is None:  # BODY[]<start.length>
                    out.append(_partial_span((0, size), item.partial))  # type: ignore[arg-type]
                elif sec.text == "TEXT":  # BODY[TEXT]<start.length>
                    if r is None:
                        return None
                    out.append(_partial_span((r.header_end, size), item.partial))  # type: ignore[arg-type]
                elif r is None:
                    return None
                else:  # HEADER, HEADER.FIELDS (.NOT) of the message
                    out.append((0, r.header_end))
            elif tree is None:
                return None
            elif item.binary:
                out += _node_range(tree, sec.part)
            else:
                fields = sec.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")
                span = section_range(tree, sec.part, "HEADER" if fields else (sec.text or ""))
                if span is not None:  # a <partial> of a part is sliced from the message (section_slice)
                    out.append(span if fields or item.partial is None else _partial_span(span, item.partial))
        else:  # FetchBinarySize
            if not item.part or tree is None:
                return None
            out += _node_range(tree, item.part)
    return out


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    start, length = partial
    return data[start:start + length]  # RFC 3501 §6.4.5: past the end gives an empty string


def _literal_value(data: bytes | None) -> Iterator[bytes]:
    if data is None:
        yield b"NIL"
    else:
        if b"\x00" in data:  # RFC 3501 §4.3: a literal is CHAR8, which excludes NUL; 0x80 instead, as Dovecot
            data = data.replace(b"\x00", b"\x80")
        yield from literal_parts(data)


def message_pieces(seq: int, i: int, view: SelectedMailbox, plan: FetchPlan, r: Rendered | None,
                   raw: bytes | None, tree: BodyPart | None, add_flags: bool,
                   decoded: Decoded | None = None) -> Iterator[bytes]:
    """The wire pieces of one ``* n FETCH (...)`` response, made one item at a time as they are taken."""
    uid = view.uids[i]
    facts = view.fact(i) if plan.facts else None
    yield b"* %d FETCH (" % seq
    sep = b""  # b" " once an item has been written

    if plan.uid:
        yield b"UID %d" % uid
        sep = b" "
    for item, response_name in zip(plan.items, plan.names):
        if isinstance(item, c.FetchAtt):
            n = item.name
            if n == "FLAGS":
                yield sep + b"FLAGS " + view.flags_of(i)
                add_flags = False
            elif n == "UID":
                yield sep + b"UID %d" % uid
            elif n == "RFC822.SIZE":
                yield sep + b"RFC822.SIZE %d" % facts.size  # type: ignore[union-attr]
            elif n == "INTERNALDATE":
                yield sep + b"INTERNALDATE " + date_time(facts.internal_date)  # type: ignore[union-attr]
            elif n == "ENVELOPE":
                yield sep + b"ENVELOPE " + r.envelope  # type: ignore[union-attr]
            elif n == "BODYSTRUCTURE":
                yield sep + b"BODYSTRUCTURE " + r.bodystructure  # type: ignore[union-attr]
            elif n == "BODY":
                yield sep + b"BODY " + r.body  # type: ignore[union-attr]
            elif n == "MODSEQ":  # RFC 7162 §3.1.4
                yield sep + b"MODSEQ (%d)" % view.modseqs[i]
            elif n == "RFC822":
                yield sep + b"RFC822 "
                yield from _literal_value(raw)
            elif n == "RFC822.HEADER":
                yield sep + b"RFC822.HEADER "
                yield from _literal_value(raw[:r.header_end] if raw is not None else r.header)  # type: ignore[index,union-attr]
            elif n == "RFC822.TEXT":
                yield sep + b"RFC822.TEXT "
                yield from _literal_value(raw[r.header_end:])  # type: ignore[index,union-attr]
            else:  # EMAILID, THREADID, SAVEDATE: not kept (RFC 8474 §5 / RFC 8514 allow NIL)
                yield sep + n.encode("ascii") + b" NIL"
        elif isinstance(item, c.FetchBody):
            yield sep + response_name + b" "  # type: ignore[operator]
            if item.binary:
                data = binary_bytes(raw, tree, item.section.part, decoded)  # type: ignore[arg-type]
                if data is None:
                    yield b"NIL"
                else:
                    data = _partial(data, item.partial)
                    if b"\x00" in data:
                        yield literal8(data)  # RFC 3516 §4.2
                    else:
                        yield from literal_parts(data)
            else:
                yield from _literal_value(section_slice(raw, r, tree, item.section, item.partial))
        else:  # FetchBinarySize, RFC 3516 §4.2
            size = decoded.get(item.part) if decoded else None  # an int: counted beforehand
            if not isinstance(size, int):
                data = binary_bytes(raw, tree, item.part, decoded)  # type: ignore[arg-type]
                size = None if data is None else len(data)
            yield sep + response_name + (b" NIL" if size is None else b" %d" % size)  # type: ignore[operator]
        sep = b" "
    if add_flags:
        yield sep + b"FLAGS " + view.flags_of(i)
        sep = b" "
    if plan.modseq:
        yield sep + b"MODSEQ (%d)" % view.modseqs[i]
    yield b")\r\n"


def batches(view: SelectedMailbox, indexes: Sequence[int], plan: FetchPlan) -> Iterator[Sequence[int]]:
    if not plan.raw and not plan.header:
        for k in range(0, len(indexes), BATCH_MESSAGES * 4):
            yield indexes[k:k + BATCH_MESSAGES * 4]
        return
    start = octets = 0
    for k, i in enumerate(indexes):
        octets += view.fact(i).size
        if k + 1 - start >= BATCH_MESSAGES or octets >= BATCH_OCTETS:
            yield indexes[start:k + 1]
            start, octets = k + 1, 0
    if start < len(indexes):
        yield indexes[start:]


async def run_fetch(view: SelectedMailbox, indexes: Sequence[int], plan: FetchPlan, *, store, cache: RenderCache,
                    ref: FolderRef, out: Output, flags_changed: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Write the FETCH responses for ``indexes`` (ascending), batch by batch, facts read a chunk ahead."""
    for k in range(0, len(indexes), FACTS_BATCH):
        chunk = indexes[k:k + FACTS_BATCH]
        if plan.facts:
            await load_facts(store, ref, view, chunk)
        for batch in batches(view, chunk, plan):
            await _fetch_batch(view, batch, plan, store, cache, ref.partition, out, flags_changed)


async def _fetch_batch(view: SelectedMailbox, batch: Sequence[int], plan: FetchPlan, store, cache: RenderCache,
                       partition: str, out: Output, flags_changed: set[int]) -> None:
    blob_ids = [view.fact(i).blob_id for i in batch] if plan.facts else []
    rendered = await cache.rendered(partition, blob_ids, plan.render) if plan.render is not None else {}
    trees = await cache.trees(partition, blob_ids) if plan.tree else {}
    raws: dict[int, bytes | Ranges] = {}
    if plan.raw:
        whole: list[int] = []
        for i in batch:
            f = view.fact(i)
            spans = (needed_ranges(plan, rendered.get(f.blob_id), trees.get(f.blob_id), f.size)
                     if f.size >= RANGED_OCTETS else None)
            if spans is None or mostly(spans, f.size):
                whole.append(f.blob_id)
            elif f.blob_id not in raws:
                raws[f.blob_id] = await read_ranges(store, partition, f.blob_id, f.size, spans)
        raws.update(await store.raw_many(partition, whole) if whole else {})
    if plan.header:  # read a message once for its header, then keep the header
        need = [bid for bid in blob_ids if (r := rendered.get(bid)) is not None and r.header is None]
        if need:
            for bid, raw in (await store.raw_many(partition, need)).items():
                cache.keep_header(partition, bid, raw)
    pieces: list[bytes] = []
    octets = 0
    for k, i in enumerate(batch, 1):
        if k % YIELD_MESSAGES == 0:
            await asyncio.sleep(0)
        bid = view.fact(i).blob_id if plan.facts else 0
        decoded = await decode_large_parts(raws.get(bid, b""), trees.get(bid), plan, cache, partition, bid) \
            if plan.binary_parts else None
        for piece in message_pieces(i + 1, i, view, plan, rendered.get(bid),
                                    raws.get(bid, b"") if plan.raw else None, trees.get(bid), i in flags_changed,
                                    decoded):
            pieces.append(piece)
            octets += len(piece)
            if octets >= FLUSH_OCTETS:  # written and drained before the next item is made
                out.writelines(pieces)
                pieces, octets = [], 0
                await out.drain()
                # drain() returns at once while a fast reader keeps the buffer low: others get
                # the loop after every FLUSH_OCTETS all the same (200 MB of partials held it 110 ms).
                await asyncio.sleep(0)
    out.writelines(pieces)
    await out.drain()
