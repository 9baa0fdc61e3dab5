"""The asyncio client aioimaplib against the server: a whole mail-client session, and IDLE woken by delivery."""

from __future__ import annotations

import asyncio
import time

import aioimaplib

from .harness import PASSWORD, message


async def connect(server, user: str = "alice@city.test") -> aioimaplib.IMAP4:
    c = aioimaplib.IMAP4(host="127.0.0.1", port=server.port, timeout=30)
    await c.wait_hello_from_server()
    assert (await c.login(user, PASSWORD)).result == "OK"
    return c


async def test_a_client_session(server):
    await server.loop_run(server.deliver_many("alice", [message("first", "alpha"), message("second", "beta")]))
    c = await connect(server)
    assert c.has_capability("IDLE") and c.has_capability("MOVE")
    assert (await c.id(name="aioimaplib-test")).result == "OK"
    assert (await c.namespace()).result == "OK"
    resp = await c.list('""', "*")
    assert resp.result == "OK" and any(b"Sent" in line for line in resp.lines)
    assert (await c.create("Work")).result == "OK"
    assert (await c.subscribe("Work")).result == "OK"
    assert any(b"Work" in line for line in (await c.lsub('""', "*")).lines)
    resp = await c.status("INBOX", "(MESSAGES UNSEEN)")
    assert b"INBOX (MESSAGES 2 UNSEEN 2)" in resp.lines[0]
    resp = await c.select("INBOX")
    assert resp.result == "OK" and b"2 EXISTS" in resp.lines
    resp = await c.fetch("1:2", "(UID FLAGS BODY.PEEK[TEXT])")
    assert resp.result == "OK" and bytearray(b"alpha\r\n") in resp.lines
    resp = await c.search("BODY", "beta")
    assert resp.lines[0] == b"2"
    resp = await c.uid_search("SUBJECT first")
    assert resp.lines[0] == b"1"
    assert (await c.store("1", "+FLAGS", "(\\Flagged)")).result == "OK"
    resp = await c.uid("fetch", "1", "(FLAGS)")
    assert b"\\Flagged" in resp.lines[0]
    resp = await c.append(message("third", "gamma"), mailbox="Work", flags="(\\Seen)")
    assert resp.result == "OK" and b"APPENDUID" in resp.lines[-1]
    assert (await c.copy("1", "Work")).result == "OK"
    assert (await c.move("2", "Work")).result == "OK"
    assert (await c.store("1", "+FLAGS", "(\\Deleted)")).result == "OK"
    resp = await c.expunge()
    assert resp.result == "OK" and b"1 EXPUNGE" in resp.lines
    assert (await c.check()).result == "OK"
    assert (await c.close()).result == "OK"
    resp = await c.examine("Work")
    assert b"3 EXISTS" in resp.lines and b"[READ-ONLY]" in resp.lines[-1]
    resp = await c.getquotaroot("INBOX")
    assert resp.result == "OK"
    assert (await c.rename("Work", "Done")).result == "OK"
    assert (await c.unsubscribe("Done")).result == "OK"
    assert (await c.delete("Done")).result == "OK"
    assert (await c.logout()).result == "OK"


async def test_idle_wakes_on_delivery(server):
    c = await connect(server)
    await c.select("INBOX")
    idle = await c.idle_start(timeout=30)
    t0 = time.monotonic()
    await server.loop_run(server.deliver_many("alice", [message("wake up")]))
    pushed = await asyncio.wait_for(c.wait_server_push(), 5)
    elapsed = time.monotonic() - t0
    assert b"1 EXISTS" in pushed and elapsed < 1.0
    c.idle_done()
    await asyncio.wait_for(idle, 5)
    assert (await c.logout()).result == "OK"


async def test_idle_of_many_sessions_all_wake(server):
    clients = [await connect(server) for _ in range(10)]
    idles = []
    for c in clients:
        await c.select("INBOX")
        idles.append(await c.idle_start(timeout=30))
    await server.loop_run(server.deliver_many("alice", [message("to everyone")]))
    pushed = await asyncio.gather(*(asyncio.wait_for(c.wait_server_push(), 5) for c in clients))
    assert all(b"1 EXISTS" in p for p in pushed)
    for c, idle in zip(clients, idles):
        c.idle_done()
        await asyncio.wait_for(idle, 5)
        await c.logout()
