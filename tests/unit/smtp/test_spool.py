"""mailserver.smtp.spool: incremental dot-unstuffing in any chunking, the size limit while streaming, spilling to disk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.smtp.spool import DataReader, Spool


def _reference(wire: bytes) -> bytes:
    """The message a whole-buffer reader finds (RFC 5321 §4.5.2)."""
    buf = b"\r\n" + wire
    end = buf.find(b"\r\n.\r\n")
    return buf[: end + 2].replace(b"\r\n.", b"\r\n")[2:]


def _feed(wire: bytes, cuts: list[int], limit: int = 1 << 20, in_memory: int = 64) -> tuple[DataReader, bytes]:
    reader = DataReader(limit, Spool(in_memory))
    rest = None
    for a, b in zip([0, *cuts], [*cuts, len(wire)]):
        rest = reader.feed(wire[a:b])
        if rest is not None:
            rest += wire[b:]
            break
    return reader, rest


lines = st.lists(st.sampled_from([b"", b".", b"..", b"a", b".a", b"\r", b"x\r", b"\n", b"text line", b". ."]),
                 max_size=12)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(lines, st.lists(st.integers(1, 200), max_size=8), st.sampled_from([b"", b"QUIT\r\n"]))
def test_any_chunking_gives_the_same_message(body_lines, raw_cuts, after):
    message = b"".join(line + b"\r\n" for line in body_lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in body_lines)
    wire = stuffed + b".\r\n" + after
    cuts = sorted({c for c in raw_cuts if c < len(wire)})
    reader, rest = _feed(wire, cuts)
    assert rest == after
    assert not reader.too_big
    assert reader.spool.getvalue() == message == _reference(wire)


def test_the_limit_applies_while_streaming_and_nothing_more_is_kept():
    reader = DataReader(1000, Spool(100))
    for _ in range(50):
        assert reader.feed(b"x" * 999 + b"\r\n") is None
    assert reader.too_big and reader.spool.size <= 1000 and not reader.spool.on_disk
    assert reader.feed(b".\r\nNOOP\r\n") == b"NOOP\r\n"


def test_a_big_message_goes_to_disk():
    spool = Spool(1024)
    reader = DataReader(1 << 20, spool)
    assert reader.feed(b"y" * 5000 + b"\r\n.\r\n") == b""
    assert spool.on_disk and spool.getvalue() == b"y" * 5000 + b"\r\n"
    spool.close()
