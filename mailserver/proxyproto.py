"""PROXY protocol v1 and v2 headers (HAProxy's proxy-protocol.txt), parsed sans-I/O: bytes in, the client's address out.

A load balancer that passes TCP through to several nodes puts one header in
front of the client's bytes, saying whom the connection is from.

Implementation notes
- `ProxyHeaderParser.needed()` says how many more bytes it wants, and never
  more than the header still lacks, so a caller reading the socket with
  recv(needed) never takes a byte of the protocol behind it (which may be a
  TLS ClientHello). `feed(data)` takes any chunk and returns what is left
  after the header; feeding the same bytes in any chunking gives the same
  result (a property test checks).
- Bounded: a v1 header is at most V1_MAX_LENGTH bytes (spec §2.1: 107 with
  CRLF); a v2 header's address block at most V2_MAX_PAYLOAD bytes. Anything
  that cannot become a valid header is refused as soon as it is seen.
- Only ProxyHeaderError escapes. A v2 LOCAL command (a health check by the
  balancer itself), an UNKNOWN / UNSPEC family or a UNIX socket give no
  client address: the connection's own peer is used (spec §2.1, §2.2).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["ProxyHeader", "ProxyHeaderError", "ProxyHeaderParser", "V2_SIGNATURE", "V1_MAX_LENGTH",
           "V2_MAX_PAYLOAD", "looks_like_proxy_header"]

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # spec §2.1: "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n"
V1_MIN_LENGTH = 15  # "PROXY UNKNOWN\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # spec §2.2
V2_FIXED = 16  # signature, version/command, family/transport, length
V2_MAX_PAYLOAD = 2048  # addresses (36 bytes at most) plus TLVs; balancers send a few hundred at most
_V2_ADDRESS_SIZES = {0x11: 12, 0x21: 36}  # TCP over IPv4, TCP over IPv6 (spec §2.2, the address block)


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int  # 1 or 2
    source: tuple[str, int] | None  # the client's address and port; None: use the connection's own
    destination: tuple[str, int] | None


def looks_like_proxy_header(data: bytes) -> bool:
    """Whether `data` starts like a v1 or v2 header (for logs about a header sent where none is trusted)."""
    return data.startswith(V1_PREFIX) or data.startswith(V2_SIGNATURE)


class ProxyHeaderParser:
    """Feed bytes until `result` is set; then `feed` has returned the bytes after the header."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.result: ProxyHeader | None = None

    def needed(self) -> int:
        """Bytes to read next, never past the end of the header (0 once it is complete)."""
        if self.result is not None:
            return 0
        n = len(self._buf)
        if n < V1_MIN_LENGTH:
            return V1_MIN_LENGTH - n  # both versions are at least this long
        if self._buf.startswith(V2_SIGNATURE[:V1_MIN_LENGTH]):
            if n < V2_FIXED:
                return V2_FIXED - n
            return V2_FIXED + int.from_bytes(self._buf[14:16], "big") - n
        return 1  # v1: the line ends at CRLF, wherever that is

    def feed(self, data: bytes) -> bytes:
        """Take bytes; returns those after the header once it is complete (b"" before)."""
        view = memoryview(data)
        while view and self.result is None:
            take = self.needed()
            self._buf += view[:take]
            view = view[take:]
            self._step()
        return bytes(view)

    def _step(self) -> None:
        buf = bytes(self._buf)
        if buf[:1] == V2_SIGNATURE[:1]:
            self._step_v2(buf)
        elif V1_PREFIX.startswith(buf[:len(V1_PREFIX)]):
            self._step_v1(buf)
        else:
            raise ProxyHeaderError("not a PROXY protocol header")

    # -- v1 (spec §2.1) ------------------------------------------------------------------

    def _step_v1(self, buf: bytes) -> None:
        if not buf.endswith(b"\r\n"):
            if len(buf) >= V1_MAX_LENGTH or b"\n" in buf or b"\r" in buf[:-1]:
                raise ProxyHeaderError("PROXY v1 header without CRLF within 107 bytes")
            return
        self.result = _parse_v1(buf[len(V1_PREFIX):-2].decode("ascii", "replace"))

    # -- v2 (spec §2.2) ------------------------------------------------------------------

    def _step_v2(self, buf: bytes) -> None:
        if not buf.startswith(V2_SIGNATURE[:min(len(buf), len(V2_SIGNATURE))]):
            raise ProxyHeaderError("not a PROXY protocol header")
        if len(buf) < V2_FIXED:
            return
        ver_cmd, fam = buf[12], buf[13]
        if ver_cmd >> 4 != 2 or ver_cmd & 0x0F > 1:
            raise ProxyHeaderError("PROXY v2: unknown version or command")
        length = int.from_bytes(buf[14:16], "big")
        if length > V2_MAX_PAYLOAD:
            raise ProxyHeaderError(f"PROXY v2: address block of {length} bytes (limit {V2_MAX_PAYLOAD})")
        if len(buf) < V2_FIXED + length:
            return
        payload = buf[V2_FIXED:]
        if ver_cmd & 0x0F == 0:  # LOCAL: the balancer's own connection
            self.result = ProxyHeader(2, None, None)
            return
        size = _V2_ADDRESS_SIZES.get(fam)
        if size is None:
            if fam >> 4 > 3 or fam & 0x0F > 2:
                raise ProxyHeaderError("PROXY v2: unknown address family or transport")
            self.result = ProxyHeader(2, None, None)  # UNSPEC, UDP or UNIX: no client IP to use
            return
        if length < size:
            raise ProxyHeaderError("PROXY v2: address block too short for its family")
        half = (size - 4) // 2
        src = ipaddress.ip_address(payload[:half])
        dst = ipaddress.ip_address(payload[half:2 * half])
        sport = int.from_bytes(payload[2 * half:2 * half + 2], "big")
        dport = int.from_bytes(payload[2 * half + 2:size], "big")
        self.result = ProxyHeader(2, (str(src), sport), (str(dst), dport))


def _parse_v1(line: str) -> ProxyHeader:
    parts = line.split(" ")
    if parts[0] == "UNKNOWN":  # the rest of the line is to be ignored
        return ProxyHeader(1, None, None)
    if len(parts) != 5 or parts[0] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("PROXY v1: expected TCP4|TCP6 src dst sport dport")
    version = 4 if parts[0] == "TCP4" else 6
    src, dst = _v1_address(parts[1], version), _v1_address(parts[2], version)
    return ProxyHeader(1, (src, _v1_port(parts[3])), (dst, _v1_port(parts[4])))


def _v1_address(text: str, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError("PROXY v1: bad address") from None
    if addr.version != version:
        raise ProxyHeaderError("PROXY v1: address does not match the protocol")
    return str(addr)


def _v1_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError("PROXY v1: bad port")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError("PROXY v1: bad port")
    return port
