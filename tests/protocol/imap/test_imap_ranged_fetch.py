"""FETCH of parts of a large message reads only the byte ranges it needs (fetch.RANGED_OCTETS), through imaplib.

The same FETCH commands are answered with the message read whole and read by ranges; the
responses must be byte for byte the same, and with ranges the large message is never read whole
unless an item needs it all (RFC822, BODY[], TEXT).
"""

from __future__ import annotations

import base64
import imaplib
import random

import pytest

from mailserver.imap import fetch

from .harness import PASSWORD


def big_message() -> bytes:
    """A text part, a 675 KB base64 attachment (500,000 octets), a message/rfc822 part, a 300 KB quoted-printable part."""
    rng = random.Random(20261205)
    attachment = base64.encodebytes(rng.randbytes(500_000))
    return (b"From: carol@city.test\r\nTo: alice@city.test\r\nSubject: the big one\r\n"
            b"Message-ID: <big@city.test>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n'
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe text part: see the attachment.\r\n"
            b'--b1\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment +
            b"--b1\r\nContent-Type: message/rfc822\r\n\r\n"
            b"From: dave@city.test\r\nSubject: forwarded\r\nDate: Mon, 02 Nov 2026 10:00:00 +0800\r\n\r\n"
            b"The forwarded body.\r\n"
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"caf=C3=A9 " + b"x" * 300_000 + b"\r\n--b1--\r\n")


COMMANDS = [
    "(BODY.PEEK[1])", "(BODY.PEEK[2]<100.500>)", "(BODY.PEEK[2.MIME])", "(BODY.PEEK[3.HEADER])",
    "(BODY.PEEK[3.TEXT])", "(BODY.PEEK[3.HEADER.FIELDS (SUBJECT)])", "(BODY.PEEK[3.HEADER.FIELDS.NOT (SUBJECT)])",
    "(BINARY.PEEK[2])", "(BINARY.SIZE[2])", "(BINARY.PEEK[4]<0.20>)", "(BODY.PEEK[]<0.65536>)",
    "(BODY.PEEK[]<65536.65536>)", "(BODY.PEEK[]<99999999.10>)", "(BODY.PEEK[HEADER])",
    "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])", "(RFC822.HEADER)", "(BODY.PEEK[9])", "(BINARY.PEEK[9])",
    "(BODY.PEEK[1] BODY.PEEK[]<10.100> RFC822.HEADER BINARY.SIZE[2] BODY.PEEK[4]<0.50>)",
    "(BODY.PEEK[1] BODY.PEEK[TEXT]<0.100>)", "(BODY.PEEK[1] RFC822.SIZE)",
    "(BODY.PEEK[4]<299990.100>)", "(BODY.PEEK[3.TEXT]<5.10>)", "(BODY.PEEK[2.MIME]<0.10>)",
    "(BODY.PEEK[4]<400000.10>)", "(BODY.PEEK[9]<0.10>)", "(BODY.PEEK[3.HEADER.FIELDS (SUBJECT)]<2.5>)",
    "(BODY.PEEK[TEXT]<0.2048>)", "(BODY.PEEK[TEXT]<99999999.5>)",
]
WHOLE = ["(RFC822)", "(BODY.PEEK[])", "(BODY.PEEK[TEXT])", "(BINARY.PEEK[])"]


@pytest.fixture
def box(server):
    server.deliver("alice", big_message())
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=60)
    c.login("alice@city.test", PASSWORD)
    c.select("INBOX", readonly=True)
    yield server, c
    c.logout()


def answers(c: imaplib.IMAP4, commands: list[str]) -> list:
    out = []
    for cmd in commands:
        typ, data = c.fetch("1", cmd)
        assert typ == "OK", (cmd, data)
        out.append(data)
    return out


def whole_reads(store, monkeypatch) -> list[int]:  # noqa: ANN001
    """The blob ids the store reads whole (Store.raw_many) from now on, one entry per message read."""
    read_whole: list[int] = []
    real = store.raw_many

    async def counted(partition, blob_ids):  # noqa: ANN001
        ids = list(blob_ids)
        read_whole.extend(ids)
        return await real(partition, ids)

    monkeypatch.setattr(store, "raw_many", counted)
    return read_whole


def test_most_of_a_message_is_read_in_one_go(box, monkeypatch):
    """Ranges covering more than three quarters of the message: one whole read is cheaper than a range."""
    server, c = box
    read_whole = whole_reads(server.mb.store, monkeypatch)
    answers(c, ["(BODY.PEEK[2] BODY.PEEK[4])"])  # 675 + 300 KB of a 1 MB message
    assert len(read_whole) == 1
    answers(c, ["(BODY.PEEK[4])"])
    assert len(read_whole) == 1


def test_parts_of_a_large_message_are_read_by_ranges_and_answered_as_when_read_whole(box, monkeypatch):
    server, c = box
    read_whole = whole_reads(server.mb.store, monkeypatch)
    monkeypatch.setattr(fetch, "RANGED_OCTETS", 1 << 40)  # never: the message is read whole
    expected = answers(c, COMMANDS + WHOLE)
    assert len(read_whole) == len(COMMANDS) - 2 + len(WHOLE)  # the header-only ones come from the cache
    read_whole.clear()
    monkeypatch.setattr(fetch, "RANGED_OCTETS", 256 << 10)
    assert answers(c, COMMANDS + WHOLE) == expected
    # Read whole only for the items that need it all, WHOLE (a <partial> is read as those octets: the
    # command with BODY.PEEK[4]<0.50> needs 50 of part 4, BODY.PEEK[TEXT]<0.100> 100 of the text).
    assert len(read_whole) == len(WHOLE)
    # The contents are what the parts hold (not just the same on both paths).
    [(_, text)] = [d for d in expected[0] if isinstance(d, tuple)]
    assert text == b"The text part: see the attachment."  # the CRLF before a boundary is the boundary's
    [(_, sub)] = [d for d in expected[5] if isinstance(d, tuple)]
    assert sub == b"Subject: forwarded\r\n\r\n"
    assert b"BINARY.SIZE[2] 500000" in expected[8][0]
    [(_, chunk)] = [d for d in expected[10] if isinstance(d, tuple)]
    assert len(chunk) == 65536 and chunk.startswith(b"From: carol@city.test\r\n")


def test_a_small_message_is_read_whole_in_one_go(server, monkeypatch):
    """Below RANGED_OCTETS one query reads a batch of messages whole: cheaper than a query per range."""
    for i in range(3):
        server.deliver("alice", b"Subject: small %d\r\nContent-Type: text/plain\r\n\r\nbody %d\r\n" % (i, i))
    store = server.mb.store
    calls: list[list[int]] = []
    real = store.raw_many

    async def counted(partition, blob_ids):  # noqa: ANN001
        calls.append(list(blob_ids))
        return await real(partition, calls[-1])

    monkeypatch.setattr(store, "raw_many", counted)
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=60)
    try:
        c.login("alice@city.test", PASSWORD)
        c.select("INBOX", readonly=True)
        typ, data = c.fetch("1:3", "(BODY.PEEK[1])")
        assert typ == "OK" and [d[1] for d in data if isinstance(d, tuple)] == [b"body 0\r\n", b"body 1\r\n",
                                                                                 b"body 2\r\n"]
    finally:
        c.logout()
    assert [len(ids) for ids in calls] == [3]


def test_ranges_are_sliced_like_the_bytes_they_stand_for():
    raw = bytes(range(256)) * 4
    r = fetch.Ranges(len(raw), {(10, 100): raw[10:100], (500, 1024): raw[500:1024]})
    for a, b in [(10, 100), (20, 30), (500, 2000), (600, None), (1000, 1024), (2000, 3000), (50, 50)]:
        assert r[a:b] == raw[a:b]
    with pytest.raises(LookupError):
        r[5:20]  # noqa: B018 - never read
    assert len(r) == len(raw)


BINARY_COMMANDS = ["(BINARY.PEEK[2])", "(BINARY.SIZE[2])", "(BINARY.PEEK[4])", "(BINARY.SIZE[4])",
                   "(BINARY.PEEK[2]<1000.2000>)", "(BINARY.PEEK[4]<0.20>)", "(BINARY.SIZE[2] BINARY.PEEK[4] BINARY.SIZE[1])"]


def test_large_encoded_parts_are_decoded_in_steps_and_answered_as_when_decoded_at_once(box, monkeypatch):
    """BINARY and BINARY.SIZE of a large base64 or quoted-printable part decode it in steps (fetch.LARGE_BINARY),
    the event loop given back between them (one call on a 20 MB part held it 75 ms); the answers do not change."""
    server, c = box
    monkeypatch.setattr(fetch, "LARGE_BINARY", 1 << 40)  # never: one call per part, as before
    expected = answers(c, BINARY_COMMANDS)
    steps: list[int] = []
    real = fetch.decode_in_steps

    def counted(data, encoding, step):  # noqa: ANN001
        for piece in real(data, encoding, step):
            steps.append(len(piece))
            yield piece

    monkeypatch.setattr(fetch, "decode_in_steps", counted)
    monkeypatch.setattr(fetch, "LARGE_BINARY", 100_000)
    monkeypatch.setattr(fetch, "BINARY_STEP", 16_384)
    assert answers(c, BINARY_COMMANDS) == expected
    assert len(steps) > 50  # parts 2 (675 KB) and 4 (300 KB) in 16 KB steps (a size asked again is remembered)
    [(_, attachment)] = [d for d in expected[0] if isinstance(d, tuple)]
    assert attachment == random.Random(20261205).randbytes(500_000)
    assert b"BINARY.SIZE[2] 500000" in expected[1][0]
    [(_, text)] = [d for d in expected[2] if isinstance(d, tuple)]
    assert text == "café ".encode() + b"x" * 300_000


def test_a_quoted_printable_line_with_no_place_to_cut_is_decoded_off_the_event_loop(server, monkeypatch):
    """A crafted quoted-printable line made only of "=" and one other octet in turn has no place where a step may
    cut it: the rest is decoded in one call (~55-65 ms for 20 MB). Every step, that one too, runs in a worker
    thread, not on the event loop every session shares; the answer is the one-call decoding."""
    import threading
    line = b"=a" * 150_000
    server.deliver("alice", b"From: carol@city.test\r\nTo: alice@city.test\r\nSubject: crafted\r\nMIME-Version: 1.0\r\n"
                   b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
                   b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                   + line + b"\r\n--b1--\r\n")
    steps: list[tuple[str, int]] = []
    real = fetch.decode_in_steps

    def counted(data, encoding, step):  # noqa: ANN001
        for piece in real(data, encoding, step):
            steps.append((threading.current_thread().name, len(piece)))
            yield piece

    monkeypatch.setattr(fetch, "decode_in_steps", counted)
    monkeypatch.setattr(fetch, "LARGE_BINARY", 100_000)
    monkeypatch.setattr(fetch, "BINARY_STEP", 16_384)
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=60)
    c.login("alice@city.test", PASSWORD)
    c.select("INBOX", readonly=True)
    try:
        typ, data = c.fetch("1", "(BINARY.PEEK[2])")
        assert typ == "OK" and data[0][1] == fetch.decode_qp(line)  # (the CRLF before the boundary is not the part's)
        typ, data = c.fetch("1", "(BINARY.PEEK[1])")  # the session goes on
        assert typ == "OK" and data[0][1] == b"hi"
    finally:
        c.logout()
    assert steps and max(n for _, n in steps) > 200_000  # the line was not cut
    assert all(name.startswith("asyncio_") for name, _ in steps), steps  # the loop's worker threads


def test_a_damaged_large_base64_part_is_unknown_cte_in_steps_too(server, monkeypatch):
    """RFC 3516 §4.3: BINARY of a part that cannot be decoded is NO [UNKNOWN-CTE], on either path."""
    damaged = base64.encodebytes(bytes(range(256)) * 2001) + b"QUJ\r\n"  # whole quanta, then three characters
    server.deliver("alice", b"From: carol@city.test\r\nTo: alice@city.test\r\nSubject: damaged\r\nMIME-Version: 1.0\r\n"
                   b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
                   b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                   + damaged + b"--b1--\r\n")
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=60)
    c.login("alice@city.test", PASSWORD)
    c.select("INBOX", readonly=True)
    try:
        for large in (1 << 40, 10_000):
            monkeypatch.setattr(fetch, "LARGE_BINARY", large)
            monkeypatch.setattr(fetch, "BINARY_STEP", 4_096)
            for cmd in ("(BINARY.PEEK[2])", "(BINARY.SIZE[2])"):
                typ, data = c.fetch("1", cmd)
                assert typ == "NO" and b"[UNKNOWN-CTE]" in data[0], (large, cmd, data)
            typ, data = c.fetch("1", "(BINARY.PEEK[1])")  # the session goes on
            assert typ == "OK" and data[0][1] == b"hi"
    finally:
        c.logout()


def test_binary_size_of_a_large_part_is_decoded_once_then_remembered(box, monkeypatch):
    """BINARY.SIZE counts the decoded octets without keeping them, and the size is remembered (a blob's bytes
    never change): asked again, by this session or another, the part is not decoded again."""
    server, c = box
    calls: list[int] = []
    real = fetch.decode_in_steps

    def counted(data, encoding, step):  # noqa: ANN001
        calls.append(len(data))
        return real(data, encoding, step)

    monkeypatch.setattr(fetch, "decode_in_steps", counted)
    monkeypatch.setattr(fetch, "LARGE_BINARY", 100_000)
    for _ in range(3):
        [line] = [d for d in answers(c, ["(BINARY.SIZE[2] BINARY.SIZE[4])"])[0] if isinstance(d, bytes)]
        assert b"BINARY.SIZE[2] 500000" in line and b"BINARY.SIZE[4] %d" % len("café ".encode() + b"x" * 300_000) in line
    assert len(calls) == 2  # each part once
    other = imaplib.IMAP4("127.0.0.1", server.port, timeout=60)
    other.login("alice@city.test", PASSWORD)
    other.select("INBOX", readonly=True)
    assert b"BINARY.SIZE[2] 500000" in answers(other, ["(BINARY.SIZE[2])"])[0][0]
    other.logout()
    assert len(calls) == 2
    [(_, attachment)] = [d for d in answers(c, ["(BINARY.PEEK[2])"])[0] if isinstance(d, tuple)]
    assert len(attachment) == 500_000 and len(calls) == 3  # BINARY itself decodes (the bytes are not kept)
