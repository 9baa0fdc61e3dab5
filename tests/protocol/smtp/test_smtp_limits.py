"""Issue 7 point 6 and 10 over loopback: connection caps, the DATA deadline, DATA spooled and refused while streaming."""

from __future__ import annotations

import asyncio
import pytest

from .support import RawClient, make_config, message, running
from .test_smtplib import in_thread, smtp_session


@pytest.fixture
async def capped(tmp_path, storage_url):
    cfg = make_config(tmp_path / "data", storage_url,
                      limits={"smtp_connections": 4, "smtp_connections_per_address": 2, "smtp_data_timeout": 2,
                              "max_message_size": 2_000_000})
    async with running(cfg) as inst:
        yield inst


async def _refused(port: int) -> tuple[int, str, bytes]:
    """Connect and read what the server says first; then expect the connection closed."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    line = await asyncio.wait_for(r.readline(), 10)
    rest = await asyncio.wait_for(r.read(), 10)  # EOF: closed by the server
    w.close()
    return int(line[:3]), line[4:].decode().strip(), rest


async def test_connections_per_address_are_capped_with_421(capped):
    port = capped.port("smtp")
    a, b = await RawClient.connect(port), await RawClient.connect(port)
    code, text, rest = await _refused(port)
    assert (code, text, rest) == (421, "4.7.0 Too many connections, try again later", b"")
    # The sessions already open are still served, on every listener (the cap is per address, in total).
    assert (await a.cmd("EHLO a.example"))[0] == 250
    assert (await _refused(capped.port("submission")))[0] == 421
    await a.cmd("QUIT")
    await a.close()
    c = await RawClient.connect(port)  # a freed place is given again
    assert (await c.cmd("NOOP"))[0] == 250
    for x in (b, c):
        await x.close()


async def test_connections_in_total_are_capped(capped):
    capped.smtp.doors.max_per_address = 100  # all test clients share 127.0.0.1; exercise the total cap
    port = capped.port("smtp")
    held = [await RawClient.connect(port) for _ in range(4)]
    assert (await _refused(port))[:2] == (421, "4.7.0 Too many connections, try again later")
    for c in held:
        await c.close()


@pytest.mark.slow
async def test_data_must_end_within_the_deadline_even_when_bytes_keep_coming(capped):
    c = await RawClient.connect(capped.port("smtp"))
    await c.cmd("EHLO slow.example")
    await c.cmd("MAIL FROM:<a@other.example>")
    await c.cmd("RCPT TO:<li.na@city.test>")
    assert (await c.cmd("DATA"))[0] == 354
    c.writer.write(b"Subject: trickle\r\n\r\n")
    reply = asyncio.ensure_future(c.read_reply())
    sent = 0
    while not reply.done() and sent < 200:  # a byte every 50 ms keeps an idle timer from firing
        c.writer.write(b"x")
        sent += 1
        await asyncio.wait([reply], timeout=0.05)
    assert await reply == (421, "4.4.2 Data transfer timed out, closing connection")
    try:
        rest = await asyncio.wait_for(c.reader.read(), 30)
    except ConnectionResetError:  # closed with trickled bytes unread: TCP sends RST, not FIN (RFC 1122 §4.2.2.13)
        rest = b""
    assert rest == b""  # closed either way, nothing after the 421
    assert await capped.inbox("li.na@city.test") == []
    await c.close()


async def test_big_data_is_spooled_and_delivered_byte_for_byte(capped):
    body = (b"line of text that is not short at all, " * 2 + b"\r\n") * 20_000  # 1.6 MB, over the in-memory part
    original = message("big", sender="a@other.example", body=body.decode())

    def run():
        with smtp_session(capped.port("smtp")) as s:
            return s.sendmail("a@other.example", ["li.na@city.test"], original)
    assert await in_thread(run) == {}
    [stored] = await capped.inbox("li.na@city.test")
    assert stored.endswith(original)


async def test_data_over_the_limit_is_refused_and_the_session_goes_on(capped):
    c = await RawClient.connect(capped.port("smtp"))  # no SIZE= declared: the limit applies while streaming
    await c.cmd("EHLO big.example")
    await c.cmd("MAIL FROM:<a@other.example>")
    await c.cmd("RCPT TO:<li.na@city.test>")
    assert (await c.cmd("DATA"))[0] == 354
    chunk = b"z" * 998 + b"\r\n"
    for _ in range(3000):  # 3 MB against a 2 MB limit
        c.writer.write(chunk)
        await c.writer.drain()
    assert await c.cmd(b".") == (552, "5.3.4 Message too big for system")
    assert (await c.cmd("NOOP"))[0] == 250
    await c.close()
    assert await capped.inbox("li.na@city.test") == []


@pytest.mark.slow
async def test_an_implicit_tls_handshake_that_never_comes_is_closed(tmp_path, monkeypatch):
    from mailserver.smtp import server as smtp_server
    monkeypatch.setattr(smtp_server, "TLS_HANDSHAKE_SECONDS", 1.0)
    async with running(make_config(tmp_path / "data", f"sqlite:///{tmp_path}/p.db"), users=()) as inst:
        r, w = await asyncio.open_connection("127.0.0.1", inst.port("submissions"))
        assert await asyncio.wait_for(r.read(), 15) == b""  # no ClientHello: closed by the server
        w.close()
