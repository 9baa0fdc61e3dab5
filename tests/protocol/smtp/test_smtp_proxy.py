"""SMTP behind a TCP load balancer: a PROXY header from a trusted source names the client; from others it is refused.

The balancer here is the test itself, writing the header on a raw socket
from 127.0.0.1 (trusted in the config) before the SMTP dialogue.
"""

from __future__ import annotations

import asyncio
import base64
import email
import logging

import pytest

from mailserver import proxylisten
from tests.unit.test_proxyproto import v2

from .support import PASSWORD, RawClient, client_tls, make_config, message, start_instance, wait_for

CLIENT = "203.0.113.9"
V1 = f"PROXY TCP4 {CLIENT} 192.0.2.1 54321 25\r\n".encode()


def _config(tmp_path, storage_url, trusted: list[str], **limits):
    return make_config(tmp_path / "d", storage_url, tls={"allow_plaintext_auth_on_loopback": True},
                       listen={"proxy_trusted": trusted}, limits=limits)


async def _proxied(port: int, header: bytes, *, tls=None) -> RawClient:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(header)
    await w.drain()
    if tls is not None:
        await w.start_tls(tls)
    c = RawClient(r, w)
    code, _ = await c.read_reply()
    assert code == 220
    return c


@pytest.mark.parametrize("header", [V1, v2(CLIENT, "192.0.2.1", 54321, 25)], ids=["v1", "v2"])
async def test_the_client_named_by_the_header_is_in_the_received_header_and_the_log(
        tmp_path, storage_url, header, caplog):
    caplog.set_level(logging.INFO, logger="postroom")
    inst = await start_instance(_config(tmp_path, storage_url, ["127.0.0.1/32"]))
    try:
        await inst.add_user("li.na@city.test")
        c = await _proxied(inst.port("smtp"), header)
        assert (await c.cmd("EHLO client.example"))[0] == 250
        assert (await c.cmd("MAIL FROM:<a@outside.example>"))[0] == 250
        assert (await c.cmd("RCPT TO:<li.na@city.test>"))[0] == 250
        assert (await c.cmd("DATA"))[0] == 354
        assert (await c.cmd(message("via the balancer", sender="a@outside.example") + b"\r\n."))[0] == 250
        await c.close()
        [raw] = await inst.inbox("li.na@city.test")
        received = email.message_from_bytes(raw).get_all("Received")[0]
        assert f"[{CLIENT}]" in received and "127.0.0.1" not in received
    finally:
        await inst.stop()
    assert any(f"ip={CLIENT}" in r.getMessage() or CLIENT in r.getMessage() for r in caplog.records
               if r.name.startswith("postroom.smtp"))


async def test_login_throttle_counts_the_client_not_the_balancer(tmp_path, storage_url):
    inst = await start_instance(_config(tmp_path, storage_url, ["127.0.0.1/32"], auth_failures=2))
    try:
        await inst.add_user("zhang.wei@city.test")
        await inst.add_user("li.na@city.test")

        async def auth(client_ip: str, user: str, password: str) -> int:
            c = await _proxied(inst.port("submission"), f"PROXY TCP4 {client_ip} 192.0.2.1 1000 587\r\n".encode())
            await c.cmd("EHLO pc")
            code = (await c.cmd("AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()))[0]
            await c.close()
            return code

        # Plain-text AUTH is allowed on loopback only: the proxied client is not on loopback.
        assert await auth("203.0.113.9", "zhang.wei@city.test", PASSWORD) == 538
        assert await auth("127.0.0.1", "zhang.wei@city.test", "wrong-1") == 535
        assert await auth("127.0.0.1", "li.na@city.test", "wrong-2") == 535
        assert await auth("127.0.0.1", "li.na@city.test", PASSWORD) == 454  # that client is throttled
    finally:
        await inst.stop()


async def test_implicit_tls_behind_the_balancer(tmp_path, storage_url):
    inst = await start_instance(_config(tmp_path, storage_url, ["127.0.0.1/32"]))
    try:
        c = await _proxied(inst.port("submissions"), v2(CLIENT, "192.0.2.1", 4444, 465), tls=client_tls())
        assert (await c.cmd("EHLO pc"))[0] == 250
        [session] = inst.smtp.doors.sessions
        assert session.peer_ip == CLIENT and session.tls_active
        await c.close()
    finally:
        await inst.stop()


async def _until_closed(r: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed (a reset, for bytes it left unread, counts as closed)."""
    try:
        return await asyncio.wait_for(r.read(), 10)
    except ConnectionResetError:
        return b""


@pytest.mark.slow
async def test_a_trusted_source_without_a_valid_header_is_dropped_with_a_log_line(
        tmp_path, storage_url, caplog, monkeypatch):
    monkeypatch.setattr(proxylisten, "PROXY_HEADER_SECONDS", 0.5)
    inst = await start_instance(_config(tmp_path, storage_url, ["127.0.0.1/32"]))
    try:
        for sent in (b"EHLO client.example\r\n", b"PROXY TCP4 nonsense\r\n", b""):
            r, w = await asyncio.open_connection("127.0.0.1", inst.port("smtp"))
            w.write(sent)  # the last sends nothing at all: dropped at the deadline
            assert await _until_closed(r) == b""  # never greeted
            w.close()
    finally:
        await inst.stop()
    dropped = [r.getMessage() for r in caplog.records if "dropped a connection" in r.getMessage()]
    assert len(dropped) == 3 and any("no PROXY header in time" in m for m in dropped)


async def test_a_proxy_header_from_an_untrusted_source_is_a_protocol_error(tmp_path, storage_url):
    inst = await start_instance(_config(tmp_path, storage_url, ["192.0.2.0/24"]))
    try:
        c = await RawClient.connect(inst.port("smtp"))  # 127.0.0.1 is not trusted: greeted at once
        code, _ = await c.cmd(V1.rstrip(b"\r\n"))
        assert code == 500
        assert (await c.cmd("EHLO client.example"))[0] == 250  # the session goes on, as itself
        await c.close()
        await wait_for(lambda: not inst.smtp.doors.sessions, what="the session to end")
    finally:
        await inst.stop()
