"""The asyncio client aioimaplib against the server: a whole mail-client session, and IDLE woken by delivery."""

from __future__ import annotations

import asyncio

import aioimaplib

from .harness import PASSWORD, message

LIVENESS = 30  # seconds: only a hang takes this long; wake-up latency is in benchmarks/latency_bench.py


async def connect(server, user: str = "alice@city.test") -> aioimaplib.IMAP4:
    c = aioimaplib.IMAP4(host="127.0.0.1", port=server.port, timeout=30)
    await c.wait_hello_from_server()
    assert (await c.login(user, PASSWORD)).result == "OK"
    return c


def ok(resp, *lines: bytes) -> list[bytes]:
    """The untagged lines of an OK response; ``lines`` are what they must be (the completion text included)."""
    assert resp.result == "OK", resp
    got = [bytes(x) for x in resp.lines]
    if lines:
        assert got == list(lines), got
    return got


async def test_a_client_session(server):
    await server.loop_run(server.add_account("carol", quota_bytes=10 * 1024 * 1024, quota_messages=100))
    await server.loop_run(server.deliver_many("carol", [message("first", "alpha"), message("second", "beta")]))
    c = await connect(server, "carol@city.test")
    assert c.has_capability("IDLE") and c.has_capability("MOVE")
    assert ok(await c.id(name="aioimaplib-test"))[0].startswith(b'("name" "Postroom" "vendor" "Postroom" "version" ')
    ok(await c.namespace(), b'(("" "/")) (("Shared/" "/")) NIL', b"NAMESPACE completed")
    resp = await c.list('""', "*")
    assert resp.result == "OK" and any(b"Sent" in line for line in resp.lines)
    ok(await c.create("Work"), b"CREATE completed")
    ok(await c.subscribe("Work"), b"SUBSCRIBE completed")
    assert b'() "/" Work' in ok(await c.lsub('""', "*"))
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
    ok(await c.store("1", "+FLAGS", "(\\Flagged)"), b"1 FETCH (FLAGS (\\Flagged \\Recent))", b"STORE completed")
    resp = await c.uid("fetch", "1", "(FLAGS)")
    assert b"\\Flagged" in resp.lines[0]
    resp = await c.append(message("third", "gamma"), mailbox="Work", flags="(\\Seen)")
    assert resp.result == "OK" and b"APPENDUID" in resp.lines[-1]
    work_validity = int(resp.lines[-1].split()[1])
    ok(await c.copy("1", "Work"), b"[COPYUID %d 1 2] COPY completed" % work_validity)  # RFC 4315 §3
    ok(await c.move("2", "Work"), b"OK [COPYUID %d 2 3] Moved" % work_validity, b"2 EXPUNGE",
       b"MOVE completed")  # RFC 6851 §4.3
    ok(await c.store("1", "+FLAGS", "(\\Deleted)"), b"1 FETCH (FLAGS (\\Flagged \\Deleted \\Recent))",
       b"STORE completed")
    ok(await c.expunge(), b"1 EXPUNGE", b"EXPUNGE completed")
    ok(await c.check(), b"CHECK completed")
    ok(await c.close(), b"CLOSE completed")
    resp = await c.status("INBOX", "(MESSAGES)")
    assert b"INBOX (MESSAGES 0)" in resp.lines[0]  # 1 was copied, then expunged; 2 was moved
    resp = await c.examine("Work")
    assert b"3 EXISTS" in resp.lines and b"[READ-ONLY]" in resp.lines[-1]
    await c.select("Work")  # aioimaplib stays in AUTH state after EXAMINE
    resp = await c.fetch("1:3", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert [bytes(x) for x in resp.lines if bytes(x).startswith(b"Subject:")] == [
        b"Subject: third\r\n\r\n", b"Subject: first\r\n\r\n", b"Subject: second\r\n\r\n"]
    heads = [bytes(x) for x in resp.lines if b" FETCH (" in x]
    assert heads == [b"%d FETCH (FLAGS (%s) BODY[HEADER.FIELDS (SUBJECT)] {%d}" % x for x in (
        (1, b"\\Seen \\Recent", 18), (2, b"\\Flagged \\Recent", 18), (3, b"\\Recent", 19))]  # flags go along
    used_kib = -(-sum(len(message(s, b)) for s, b in (("first", "alpha"), ("third", "gamma"),
                                                       ("first", "alpha"), ("second", "beta"))) // 1024)
    ok(await c.getquotaroot("INBOX"), b'"" (STORAGE %d 10240 MESSAGE 3 100)' % used_kib,
       b"GETQUOTAROOT completed")  # RFC 9208 §4.3 (aioimaplib keeps the QUOTA line, not QUOTAROOT)
    ok(await c.rename("Work", "Done"), b"RENAME completed")
    names = ok(await c.list('""', "*"))
    assert b'(\\HasNoChildren) "/" Done' in names and not any(n.endswith(b" Work") for n in names)
    ok(await c.unsubscribe("Done"), b"UNSUBSCRIBE completed")
    assert not any(n.endswith(b" Done") for n in ok(await c.lsub('""', "*")))
    ok(await c.delete("Done"), b"DELETE completed")
    assert not any(n.endswith(b" Done") for n in ok(await c.list('""', "*")))
    ok(await c.logout(), b"BYE Logging out", b"LOGOUT completed")


async def test_idle_wakes_on_delivery(server):
    c = await connect(server)
    await c.select("INBOX")
    idle = await c.idle_start(timeout=LIVENESS)
    await server.loop_run(server.deliver_many("alice", [message("wake up")]))
    pushed = await asyncio.wait_for(c.wait_server_push(), LIVENESS)
    assert b"1 EXISTS" in pushed
    c.idle_done()
    await asyncio.wait_for(idle, LIVENESS)
    ok(await c.logout(), b"BYE Logging out", b"LOGOUT completed")


async def test_idle_of_many_sessions_all_wake(server):
    clients = [await connect(server) for _ in range(10)]
    idles = []
    for c in clients:
        await c.select("INBOX")
        idles.append(await c.idle_start(timeout=LIVENESS))
    await server.loop_run(server.deliver_many("alice", [message("to everyone")]))
    pushed = await asyncio.gather(*(asyncio.wait_for(c.wait_server_push(), LIVENESS) for c in clients))
    assert all(b"1 EXISTS" in p for p in pushed)
    for c, idle in zip(clients, idles):
        c.idle_done()
        await asyncio.wait_for(idle, LIVENESS)
        await c.logout()
