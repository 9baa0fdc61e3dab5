"""SMTP smuggling and STARTTLS command injection, with a raw-bytes client: one message in, never two; nothing survives TLS.

RFC 5321 §4.1.1.4: only CRLF "." CRLF ends the data. A message that holds a
near-miss end (bare LF or bare CR around the dot) followed by a second
transaction must be stored as one message containing those bytes. RFC 3207
§5: commands pipelined behind STARTTLS in the same packet are discarded, not
run once the handshake is done (CVE-2011-0411 and its kin).
"""

from __future__ import annotations

import pytest

from .support import RawClient, client_tls, message

SMUGGLED = (b"MAIL FROM:<boss@city.test>\r\nRCPT TO:<zhang.wei@city.test>\r\nDATA\r\n"
            b"From: boss@city.test\r\nSubject: smuggled\r\n\r\nwire the money\r\n")
NEAR_MISSES = {"LF.LF": b"\n.\n", "LF.CRLF": b"\n.\r\n", "CRLF.LF": b"\r\n.\n", "CR.CRLF": b"\r.\r\n"}


@pytest.mark.parametrize("ending", list(NEAR_MISSES))
async def test_a_near_miss_end_of_data_followed_by_a_transaction_stays_one_message(city, ending):
    first = message("carrier", sender="a@other.example") + b"last line" + NEAR_MISSES[ending] + SMUGGLED
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    assert (await c.cmd("MAIL FROM:<a@other.example>"))[0] == 250
    assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
    assert (await c.cmd("DATA"))[0] == 354
    code, text = await c.cmd(first + b".")  # the real end: CRLF . CRLF (the message ends with CRLF)
    # The smuggled lines are message text: exactly one reply for the whole DATA, then a NOOP's own.
    assert code == 250 and text.startswith("2.0.0 OK queued as"), (code, text)
    noop = await c.cmd("NOOP")
    assert noop[0] == 250, noop
    await c.close()
    [stored] = await city.inbox("li.na@city.test")
    # Byte for byte, the near miss and the would-be commands included; a dot that starts a line
    # after CRLF is taken as dot-stuffing and dropped (RFC 5321 §4.5.2), as the sender did not stuff it.
    assert stored.endswith((b"\r\n" + first).replace(b"\r\n.", b"\r\n")[2:])
    assert stored.count(b"\r\nSubject: ") == 2  # the carrier's and the smuggled one, as text
    assert await city.inbox("zhang.wei@city.test") == []  # the smuggled transaction never happened


async def test_commands_pipelined_behind_starttls_are_discarded(city):
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO other.example")
    # One write: STARTTLS and, in the clear behind it, a whole transaction (RFC 3207 §5).
    c.writer.write(b"STARTTLS\r\nMAIL FROM:<a@other.example>\r\nRCPT TO:<li.na@city.test>\r\nDATA\r\n")
    await c.writer.drain()
    code, _ = await c.read_reply()
    assert code == 220
    await c.writer.start_tls(client_tls())
    # The first reply after the handshake is our own command's: nothing queued from the clear text.
    code, text = await c.cmd("EHLO other.example")
    lines = text.split("\n")
    assert code == 250 and lines[0].startswith("mail.city.test") and "STARTTLS" not in lines, text
    assert await c.cmd("RCPT TO:<li.na@city.test>") == (503, "5.5.1 Need MAIL command")  # no MAIL ran
    assert (await c.cmd("MAIL FROM:<a@other.example>"))[0] == 250
    assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
    assert (await c.cmd("DATA"))[0] == 354
    assert (await c.cmd(message("after tls", sender="a@other.example") + b"."))[0] == 250
    await c.close()
    [stored] = await city.inbox("li.na@city.test")
    assert b"Subject: after tls" in stored and b"with ESMTPS" in stored
