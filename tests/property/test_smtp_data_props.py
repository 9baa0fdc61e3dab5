"""Chunking properties of the SMTP DATA reader (mailserver.smtp.spool): the bytes, however cut, give one result.

What is covered is ours: DataReader (RFC 5321 §4.5.2 dot-unstuffing, the CRLF.CRLF terminator, the
size limit while streaming, what follows the terminator) over Spool (memory, then a temporary file).
aiosmtpd reads the command lines; from DATA on, handler._read_data feeds DataReader what the socket
gives, so these cuts stand for TCP segment boundaries. The result is (message bytes, too big,
bytes after the terminator); it must not depend on the cuts, and must be what a reader holding the
whole buffer finds. tests/unit/smtp/test_spool.py has the first such property on a small alphabet;
here the input is any byte string rich in CR, LF and dots (so the smuggling shapes ``\\n.\\n``,
``\\n.\\r\\n``, ``\\r\\n.\\n``, ``\\r.\\r\\n`` occur), every cut of a short input is tried, and cuts
are placed inside the terminator and inside stuffed dots on purpose.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.smtp.spool import DataReader, Spool
from tests.unit.smtp.test_spool import _reference

EXAMPLES = int(os.environ.get("SMTP_PROP_EXAMPLES", "300"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TERMINATOR = b"\r\n.\r\n"

pieces = st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"\r\n.", b"..", b"\r\n..", b"\n.\n", b"\r.\r\n",
                          b"\r\n.\n", b"\n.\r\n", b"a", b"text", b"\x00", b"\xff"])
fragments = st.lists(pieces | st.binary(max_size=6), max_size=40).map(b"".join)
# Mostly a terminated message with something after it (a pipelined command, or more of the same).
wires = st.builds(lambda body, end, after: body + (b"\r\n.\r\n" if end else b"") + after,
                  fragments, st.integers(0, 3).map(bool), fragments)
lines = st.lists(st.binary(max_size=12).filter(lambda b: b"\r\n" not in b and not b.endswith(b"\r")), max_size=10)


def outcome(wire: bytes, cuts: list[int], *, limit: int = 1 << 20, in_memory: int = 1 << 20
            ) -> tuple[bytes | None, bool, bytes | None]:
    """Feed ``wire`` cut at ``cuts``: (message or None if too big or unterminated, too big, bytes after)."""
    reader = DataReader(limit, Spool(in_memory))
    rest = None
    try:
        for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            if a == b:
                continue
            rest = reader.feed(wire[a:b])
            if rest is not None:
                rest += wire[b:]
                break
        done = rest is not None and not reader.too_big
        return (reader.spool.getvalue() if done else None), reader.too_big, rest
    finally:
        reader.spool.close()


def expected(wire: bytes, limit: int = 1 << 20) -> tuple[bytes | None, bool, bytes | None]:
    """What a reader holding the whole buffer finds (RFC 5321 §4.1.1.4: the CRLF of DATA comes first).

    Without a terminator: what the reader fed all of it at once says (the message may already be
    known to be too big; the connection is still in DATA).
    """
    end = (b"\r\n" + wire).find(TERMINATOR)
    if end < 0:
        return outcome(wire, [], limit=limit)
    message = _reference(wire)
    big = len(message) > limit
    return (None if big else message), big, wire[end + 3:]


@pytest.mark.slow
@FAST
@given(wires, st.lists(st.integers(0, 300), max_size=10), st.sampled_from([1 << 20, 40]), st.booleans())
def test_any_cuts_give_what_the_whole_buffer_gives(wire, raw_cuts, limit, on_disk):
    cuts = sorted({c for c in raw_cuts if c <= len(wire)})
    in_memory = 8 if on_disk else 1 << 20
    assert outcome(wire, cuts, limit=limit, in_memory=in_memory) == expected(wire, limit)


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(wires)
def test_every_single_cut_and_byte_at_a_time(wire):
    want = expected(wire)
    for cut in range(len(wire) + 1):
        assert outcome(wire, [cut]) == want, cut
    assert outcome(wire, list(range(1, len(wire)))) == want


@pytest.mark.slow
@FAST
@given(lines, st.binary(max_size=20), st.data())
def test_stuffed_lines_come_back_unstuffed_with_cuts_in_the_dots_and_the_terminator(body, after, data):
    # RFC 5321 §4.5.2: the client doubles a leading dot; the server takes one away.
    message = b"".join(line + b"\r\n" for line in body)
    wire = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in body) + b".\r\n" + after
    end = len(wire) - len(after) - 5  # the terminator's CRLF (or the CRLF of DATA, for an empty body)
    dots = [i for i in range(len(wire)) if wire[i:i + 1] == b"."]
    near = sorted({c for c in [*dots, *(d + 1 for d in dots), *range(max(end, 0), end + 6)] if 0 <= c <= len(wire)})
    cuts = sorted(set(data.draw(st.lists(st.sampled_from(near), max_size=6)))) if near else []
    assert outcome(wire, cuts) == (message, False, after)
    assert outcome(wire, cuts, limit=max(len(message) - 1, 0)) == ((None, True, after) if message else
                                                                  (b"", False, after))
