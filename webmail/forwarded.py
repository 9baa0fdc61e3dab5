"""The client's address and scheme behind a trusted HTTP reverse proxy, from the Forwarded header (RFC 7239).

Implementation notes
- Only a peer inside one of the trusted networks is believed; from anyone else the
  header is ignored (it is the client's own word).
- The proxy appends its element last (RFC 7239 §4), so only the last element is read:
  whatever the client put before it is not trusted.
- An obfuscated or missing `for=` ("unknown", "_hidden") leaves the remote address as that
  token, never the proxy's own: a proxy on loopback must not make every client look local.
- The header is read from at most MAX_FORWARDED_CHARS characters, without regular expressions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

MAX_FORWARDED_CHARS = 2048  # a longer Forwarded header is ignored (the request is still served)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(specs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(s, strict=False) for s in specs)


def ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in `text`, IPv4-mapped IPv6 unmapped; None when it is no address."""
    try:
        addr = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped or addr


def is_loopback(remote: str | None) -> bool:
    addr = ip(remote)
    return addr is not None and addr.is_loopback


def last_element(header: str) -> dict[str, str]:
    """The parameters of the last forwarded-element (RFC 7239 §4), names lower-cased, quotes removed."""
    element = header.rsplit(",", 1)[-1]
    out = {}
    for pair in element.split(";"):
        name, sep, value = pair.partition("=")
        if sep:
            out[name.strip().lower()] = value.strip().strip('"')
    return out


def _node(value: str) -> str:
    """RFC 7239 §6: node = nodename [ ":" node-port ]; IPv6 in brackets."""
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def middleware(trusted: tuple[Network, ...]):
    """An aiohttp middleware that believes `Forwarded` from peers in `trusted` (none: a no-op)."""
    @web.middleware
    async def forwarded_middleware(request: web.Request, handler):
        header = request.headers.get("Forwarded")
        peer = ip(request.remote)
        if (not trusted or header is None or len(header) > MAX_FORWARDED_CHARS or peer is None
                or not any(peer in net for net in trusted)):
            return await handler(request)
        params = last_element(header)
        proto = params.get("proto", request.scheme).lower()
        changes = {"remote": _node(params.get("for", "unknown"))[:64] or "unknown"}
        if proto in ("http", "https"):
            changes["scheme"] = proto
        return await handler(request.clone(**changes))
    return forwarded_middleware
