"""Properties of the PROXY header parser: any chunking gives the same answer, and only its error escapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.proxyproto import V2_SIGNATURE, ProxyHeaderError, ProxyHeaderParser
from tests.unit.test_proxyproto import v2

SETTINGS = settings(max_examples=300, deadline=None)

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(0, 65535)


@st.composite
def headers(draw) -> bytes:
    kind = draw(st.sampled_from(["v1-4", "v1-6", "v1-unknown", "v2-4", "v2-6", "v2-local"]))
    if kind == "v1-4":
        return f"PROXY TCP4 {draw(ipv4)} {draw(ipv4)} {draw(port)} {draw(port)}\r\n".encode()
    if kind == "v1-6":
        return f"PROXY TCP6 {draw(ipv6)} {draw(ipv6)} {draw(port)} {draw(port)}\r\n".encode()
    if kind == "v1-unknown":
        return b"PROXY UNKNOWN\r\n"
    if kind == "v2-local":
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    tlvs = draw(st.binary(max_size=40))
    ip = ipv4 if kind == "v2-4" else ipv6
    return v2(draw(ip), draw(ip), draw(port), draw(port), tlvs=tlvs)


def run(data: bytes, cuts: list[int]):
    """Feed `data` cut at `cuts`; (result, rest) or the error's text."""
    p = ProxyHeaderParser()
    rest = b""
    try:
        last = 0
        for c in sorted(set(cuts)) + [len(data)]:
            rest += p.feed(data[last:c])
            last = c
    except ProxyHeaderError as exc:
        return ("error", str(exc))
    return (p.result, rest)


@SETTINGS
@given(headers(), st.binary(max_size=30), st.lists(st.integers(0, 200), max_size=12))
def test_any_chunking_gives_the_same_header_and_rest(header, after, cuts):
    data = header + after
    whole = run(data, [])
    assert whole[0] is not None and whole[0] != "error"
    assert whole[1] == after
    assert run(data, [c for c in cuts if c <= len(data)]) == whole


@pytest.mark.slow
@SETTINGS
@given(st.one_of(st.binary(max_size=200), headers().flatmap(
    lambda h: st.tuples(st.just(h), st.integers(0, len(h)), st.binary(max_size=8)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]))), st.lists(st.integers(0, 200), max_size=8))
def test_only_our_error_escapes_and_chunking_never_changes_the_answer(data, cuts):
    assert run(data, cuts) == run(data, [])  # a ValueError of ours or a result; nothing else raises
