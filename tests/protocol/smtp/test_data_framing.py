"""DATA framing at the real server: dot-stuffing and arbitrary chunking give back exactly the bytes sent.

Messages with lines that start with dots, lone dots inside, CR or LF alone,
8-bit bytes and long lines are dot-stuffed (RFC 5321 §4.5.2), cut into
random chunks and written with pauses between them; each must be stored
byte for byte after the trace headers. Seeded, so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import random

from .support import RawClient

PIECES = [b".", b"..", b".x", b"\r\n", b"\r\n.\r", b"\n.\n", b"\r", b"\n", b"text ", b"\xe9\xff\x00", b"\t",
          b"x" * 1200, b"\r\n.", b".\r\n", b"From: ", b"\r\n\r\n"]


def random_message(rng: random.Random) -> bytes:
    body = b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 40)))
    msg = b"From: a@other.example\r\nSubject: framing\r\n\r\n" + body
    return msg if msg.endswith(b"\r\n") else msg + b"\r\n"  # RFC 5321 §4.1.1.4: the data ends with CRLF


def dot_stuff(msg: bytes) -> bytes:
    stuffed = (b"\r\n" + msg).replace(b"\r\n.", b"\r\n..")[2:]
    return stuffed + b".\r\n"


async def test_any_chunking_of_dot_stuffed_data_stores_the_original_bytes(city):
    rng = random.Random(20250106)
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    sent = []
    for _ in range(60):
        msg = random_message(rng)
        assert (await c.cmd("MAIL FROM:<a@other.example> BODY=8BITMIME"))[0] == 250
        assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
        assert (await c.cmd("DATA"))[0] == 354
        wire = dot_stuff(msg)
        cuts = sorted(rng.sample(range(1, len(wire)), k=min(len(wire) - 1, rng.randrange(0, 8))))
        for a, b in zip([0, *cuts], [*cuts, len(wire)]):
            c.writer.write(wire[a:b])
            await c.writer.drain()
            await asyncio.sleep(0)  # let the server see this chunk alone
        code, text = await c.read_reply()
        assert code == 250, text
        sent.append(msg)
    await c.close()
    stored = await city.inbox("li.na@city.test")
    assert len(stored) == len(sent)
    for got, want in zip(stored, sent):
        assert got.endswith(want)
        assert got[: -len(want)].count(b"\r\n") == 7  # Return-Path, Received (4 lines), Authentication-Results (2)
