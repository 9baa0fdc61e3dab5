"""WebDAV multistatus bodies (RFC 4918 §13) written as a stream: a fixed head, responses in bounded chunks, a tail.

Implementation notes
- The elements are built with ElementTree but written by `serialise` with prefixes fixed
  for the whole body (d, card, cs, and x0, x1… for namespaces a client's PROPFIND names),
  so chunks written separately still form one well-formed document.
- Members are turned into XML CHUNK_CARDS at a time in a worker thread and written before
  the next chunk is made: memory holds one chunk, the event loop is never held by a build.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from .security import add_headers

DAV, CARD, CS = "DAV:", "urn:ietf:params:xml:ns:carddav", "http://calendarserver.org/ns/"
FIXED_PREFIXES = {DAV: "d", CARD: "card", CS: "cs"}
CHUNK_CARDS = 500  # members serialised per step of a streamed multistatus
_TEXT = {"\r": "&#13;"}  # vCards end lines with CRLF: keep the CR through XML's line-end normalisation


def q(ns: str, name: str) -> str:
    """The Clark name {ns}name."""
    return f"{{{ns}}}{name}"


def prefixes(wanted: Sequence[str] | None) -> dict[str, str]:
    """Prefixes for the fixed namespaces and for any other namespace among the `wanted` property names."""
    out = dict(FIXED_PREFIXES)
    for tag in wanted or ():
        if tag.startswith("{"):
            ns = tag[1:].split("}", 1)[0]
            out.setdefault(ns, f"x{len(out) - len(FIXED_PREFIXES)}")
    return out


def _name(tag: str, pfx: dict[str, str]) -> str:
    if tag.startswith("{"):
        ns, local = tag[1:].split("}", 1)
        return f"{pfx[ns]}:{local}"
    return tag


def serialise(el: ET.Element, pfx: dict[str, str]) -> str:
    """The element as XML text, its namespaces named by `pfx` (declared once, on the document's root)."""
    out: list[str] = []
    _write(el, pfx, out)
    return "".join(out)


def _write(el: ET.Element, pfx: dict[str, str], out: list[str]) -> None:
    name = _name(el.tag, pfx)
    attrs = "".join(f" {_name(k, pfx)}={quoteattr(v)}" for k, v in el.attrib.items())
    if not el.text and not len(el):
        out.append(f"<{name}{attrs}/>")
        return
    out.append(f"<{name}{attrs}>")
    if el.text:
        out.append(escape(el.text, _TEXT))
    for child in el:
        _write(child, pfx, out)
    out.append(f"</{name}>")


def _head(root: str, pfx: dict[str, str]) -> str:
    decls = "".join(f" xmlns:{p}={quoteattr(ns)}" for ns, p in pfx.items())
    return f'<?xml version="1.0" encoding="utf-8"?>\n<{_name(root, pfx)}{decls}>'


def error_body(condition: str) -> bytes:
    """A DAV:error body naming one precondition (RFC 4918 §16)."""
    el = ET.Element(q(DAV, "error"))
    ET.SubElement(el, condition)
    pfx = prefixes([condition])
    return (_head(q(DAV, "error"), pfx) + "".join(serialise(c, pfx) for c in el) + "</d:error>").encode()


async def stream(request: web.Request, wanted: Sequence[str] | None, head: Sequence[ET.Element],
                 members: Sequence[Any] = (), member: Callable[[Any], ET.Element] | None = None,
                 tail: Sequence[ET.Element] = ()) -> web.StreamResponse:
    """A 207 multistatus: `head` responses, then member(m) for each of `members` chunk by chunk, then `tail`."""
    pfx = prefixes(wanted)
    resp = web.StreamResponse(status=207)
    resp.content_type, resp.charset = "application/xml", "utf-8"
    add_headers(request, resp)  # sent at prepare(), before the headers middleware would see the response
    await resp.prepare(request)
    await resp.write((_head(q(DAV, "multistatus"), pfx) + "".join(serialise(e, pfx) for e in head)).encode())
    for start in range(0, len(members), CHUNK_CARDS):
        batch = members[start:start + CHUNK_CARDS]
        await resp.write(await asyncio.to_thread(_chunk, batch, member, pfx))
    await resp.write(("".join(serialise(e, pfx) for e in tail) + "</d:multistatus>").encode())
    await resp.write_eof()
    return resp


def _chunk(batch: Sequence[Any], member: Callable[[Any], ET.Element], pfx: dict[str, str]) -> bytes:
    return "".join(serialise(member(m), pfx) for m in batch).encode()
