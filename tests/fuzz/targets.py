"""Fuzz targets: one function per parser that takes any bytes and fails only when the parser breaks its contract.

Each target is plain Python (no atheris here), so the seed corpus and every crash found can be
replayed by pytest (tests/fuzz/test_fuzz.py); ``python -m tests.fuzz.run TARGET`` fuzzes one with
atheris. The first input octet steers the target (chunk sizes, limits), the rest is the wire data.

- ``imap_grammar``: the sans-I/O command parser (mailserver.imap.grammar) gives only its own event
  types for any bytes, ends with ConnectionClosed, and the same events in any chunking.
- ``mime``: mailboxes.mime parses anything without raising (its fallback is not used), the offsets
  nest, the stored form round-trips, and what is stored is the raw bytes, byte for byte.
- ``smtp_data``: the DATA reader (mailserver.smtp.spool) gives the message a whole-buffer reader
  finds, the same in any chunking, hands back what followed the terminator, and applies the limit.
"""

from __future__ import annotations

import hashlib

from mailboxes import mime as mime_mod
from mailboxes.ingest import prepare
from mailboxes.mime import ParsedMessage
from mailserver.imap.grammar import ConnectionClosed
from tests.property.test_imap_grammar_props import EVENT_TYPES, run
from tests.property.test_mime_props import check as check_parsed
from tests.property.test_smtp_data_props import expected, outcome

MAX_INPUT = 64 * 1024  # octets of one input a target looks at (the fuzzer is told the same)


def _cuts(control: int, size: int) -> list[int]:
    """Cut points every 1..16 octets, the step from the control octet (steps of one reach every boundary)."""
    step = 1 + (control >> 4)
    return list(range(step, size, step))


def imap_grammar(data: bytes) -> None:
    if not data:
        return
    control, stream = data[0], data[1:MAX_INPUT]
    limits = {"max_line": 60, "max_literal": 16} if control & 1 else {}
    whole = run(stream, **limits)
    assert all(isinstance(e, EVENT_TYPES) for e in whole), whole
    assert isinstance(whole[-1], ConnectionClosed), whole
    assert run(stream, _cuts(control, len(stream)), **limits) == whole


def mime(data: bytes) -> None:
    raw = data[:MAX_INPUT]
    check_parsed(raw)  # the real parser, without parse_message's safety net: any exception is a bug
    stored = prepare(raw)
    assert stored.raw == raw and stored.sha256 == hashlib.sha256(raw).digest()
    kept, parsed = ParsedMessage.from_json(stored.parsed_json), mime_mod.parse_message(raw)
    assert (kept.size, kept.header_end, kept.envelope, kept.body) == (
        len(raw), parsed.header_end, parsed.envelope, parsed.body)


def smtp_data(data: bytes) -> None:
    if not data:
        return
    control, wire = data[0], data[1:MAX_INPUT]
    limit = (1 << 20) if control & 1 else 64
    in_memory = 16 if control & 2 else 1 << 20  # a small spool goes to disk at once
    assert outcome(wire, _cuts(control, len(wire)), limit=limit, in_memory=in_memory) == expected(wire, limit)


TARGETS = {"imap_grammar": imap_grammar, "mime": mime, "smtp_data": smtp_data}
