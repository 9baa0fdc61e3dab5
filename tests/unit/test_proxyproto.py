"""PROXY protocol headers (HAProxy proxy-protocol.txt §2.1 v1, §2.2 v2): what is accepted, what is refused, and when."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from mailserver.proxylisten import ProxyListener, Trusted
from mailserver.proxyproto import (
    V1_MAX_LENGTH,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
    looks_like_proxy_header,
)


def v2(src: str, dst: str, sport: int, dport: int, *, command: int = 1, tlvs: bytes = b"") -> bytes:
    """A v2 header for TCP over IPv4 or IPv6 (a test builds them; the server only reads)."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if a.version == 4 else 0x21
    body = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def parse(data: bytes) -> tuple[ProxyHeader | None, bytes]:
    p = ProxyHeaderParser()
    rest = p.feed(data)
    return p.result, rest


def test_v1_tcp4_and_tcp6_and_what_follows_is_left():
    assert parse(b"PROXY TCP4 203.0.113.9 192.0.2.1 54321 25\r\nEHLO x\r\n") == (
        ProxyHeader(1, ("203.0.113.9", 54321), ("192.0.2.1", 25)), b"EHLO x\r\n")
    assert parse(b"PROXY TCP6 2001:db8::9 2001:db8::1 4000 143\r\n")[0] == ProxyHeader(
        1, ("2001:db8::9", 4000), ("2001:db8::1", 143))


def test_v1_unknown_names_no_client():
    assert parse(b"PROXY UNKNOWN\r\n") == (ProxyHeader(1, None, None), b"")
    assert parse(b"PROXY UNKNOWN whatever follows\r\nA1")[0] == ProxyHeader(1, None, None)


def test_v1_longest_header_fits_and_one_more_byte_does_not():
    longest = (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535" + b"x" * 100)[:V1_MAX_LENGTH - 2] + b"\r\n"
    assert len(longest) == V1_MAX_LENGTH and parse(longest)[0] is not None
    with pytest.raises(ProxyHeaderError):
        parse(longest[:-2] + b"x\r\n")


@pytest.mark.parametrize("bad", [
    b"PROXY TCP4 203.0.113.9 192.0.2.1 54321\r\n",  # a field missing
    b"PROXY TCP4 2001:db8::9 192.0.2.1 1 2\r\n",  # IPv6 under TCP4
    b"PROXY TCP6 203.0.113.9 2001:db8::1 1 2\r\n",
    b"PROXY TCP4 203.0.113.9 192.0.2.1 054321 25\r\n",  # leading zero
    b"PROXY TCP4 203.0.113.9 192.0.2.1 65536 25\r\n",
    b"PROXY TCP4 203.0.113.9 192.0.2.1 -1 25\r\n",
    b"PROXY TCP4  203.0.113.9 192.0.2.1 1 25\r\n",  # two spaces
    b"PROXY TCP4 203.0.113.9 192.0.2.1 1 25\n",  # LF alone
    b"PROXY UDP4 203.0.113.9 192.0.2.1 1 25\r\n",
    b"proxy TCP4 203.0.113.9 192.0.2.1 1 25\r\n",
    b"EHLO client.example\r\n",
    b"a1 LOGIN user pass\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
])
def test_v1_refusals(bad):
    with pytest.raises(ProxyHeaderError):
        parse(bad)


def test_refused_as_soon_as_it_cannot_be_a_header():
    p = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError):
        p.feed(b"E")  # no header starts with E
    p = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError):
        p.feed(b"\r\n\r\n\x00\r\nQUIX")


def test_v2_inet_inet6_and_tlvs_skipped():
    assert parse(v2("203.0.113.9", "192.0.2.1", 54321, 465) + b"\x16\x03") == (
        ProxyHeader(2, ("203.0.113.9", 54321), ("192.0.2.1", 465)), b"\x16\x03")
    tlv = b"\x01\x00\x02h2" + b"\x04\x00\x00"  # ALPN and a NOOP TLV (spec §2.2.1)
    assert parse(v2("2001:db8::9", "2001:db8::1", 1, 993, tlvs=tlv))[0] == ProxyHeader(
        2, ("2001:db8::9", 1), ("2001:db8::1", 993))


def test_v2_local_and_unspec_name_no_client():
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert parse(local + b"rest") == (ProxyHeader(2, None, None), b"rest")
    unix = V2_SIGNATURE + b"\x21\x31" + struct.pack("!H", 216) + b"\x00" * 216
    assert parse(unix)[0] == ProxyHeader(2, None, None)


@pytest.mark.parametrize("bad", [
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12,  # version 1 in a v2 header
    V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\x00" * 12,  # command 2
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4,  # too short for IPv4
    V2_SIGNATURE + b"\x21\x41\x00\x00",  # family 4
    V2_SIGNATURE + b"\x21\x13\x00\x0c" + b"\x00" * 12,  # transport 3
    V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX_PAYLOAD + 1),  # longer than we take
])
def test_v2_refusals(bad):
    with pytest.raises(ProxyHeaderError):
        parse(bad)


def test_needed_never_asks_past_the_header():
    for header in (b"PROXY TCP4 203.0.113.9 192.0.2.1 54321 25\r\n", b"PROXY UNKNOWN\r\n",
                   v2("203.0.113.9", "192.0.2.1", 1, 2, tlvs=b"\x04\x00\x01x")):
        p, got = ProxyHeaderParser(), 0
        while p.result is None:
            n = p.needed()
            assert 0 < n <= len(header) - got
            assert p.feed(header[got:got + n]) == b""
            got += n
        assert got == len(header) and p.needed() == 0


def test_a_header_where_none_is_trusted_is_recognised_for_the_log():
    assert looks_like_proxy_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
    assert looks_like_proxy_header(v2("203.0.113.9", "192.0.2.1", 1, 2))
    assert not looks_like_proxy_header(b"EHLO x\r\n")


def test_trusted_networks():
    trusted = Trusted(["127.0.0.1/32", "10.0.0.0/24", "2001:db8::/64"])
    assert "127.0.0.1" in trusted and "10.0.0.200" in trusted and "::ffff:10.0.0.1" in trusted
    assert "2001:db8::5" in trusted and "127.0.0.2" not in trusted and "nonsense" not in trusted
    assert not Trusted([]) and trusted


async def test_listeners_may_share_a_port_for_worker_processes():
    async def handoff(sock, client):
        sock.close()

    trusted = Trusted(["127.0.0.1/32"])
    first = await ProxyListener.bind("a", "127.0.0.1", 0, trusted, handoff, reuse_port=True)
    port = first.sockets[0].getsockname()[1]
    second = await ProxyListener.bind("b", "127.0.0.1", port, trusted, handoff, reuse_port=True)
    for listener in (first, second):
        listener.close()
        await listener.wait_closed()
