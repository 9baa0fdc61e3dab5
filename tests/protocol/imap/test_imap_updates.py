"""Changes seen by other sessions: EXISTS/EXPUNGE/FETCH at the right moments (RFC 3501 §7.4.1), IDLE wake-up, CONDSTORE and QRESYNC."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from imapclient import IMAPClient

from .harness import PASSWORD, Raw, message

LIVENESS = 30  # seconds: only a hang takes this long; latency is measured in benchmarks/latency_bench.py


def test_expunge_in_one_session_is_seen_by_the_other_only_when_allowed(server):
    for i in range(4):
        server.deliver("alice", message(f"m{i}"))
    a = Raw(server.port, login="alice@city.test")
    b = Raw(server.port, login="alice@city.test")
    a.cmd(b"s SELECT INBOX")
    b.cmd(b"s SELECT INBOX")
    b.cmd(b"x STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b.cmd(b"y EXPUNGE")[0] == [b"* 2 EXPUNGE\r\n"]
    # RFC 3501 §7.4.1: not during FETCH, STORE or SEARCH; the message numbers stay as the client knows them
    untagged, _ = a.cmd(b"f FETCH 1:4 (UID)")  # the expunged message is still number 2 here, with its UID
    assert untagged == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 2)\r\n", b"* 3 FETCH (UID 3)\r\n",
                        b"* 4 FETCH (UID 4)\r\n"]
    untagged, _ = a.cmd(b"g SEARCH ALL")
    assert not any(b"EXPUNGE" in u for u in untagged)
    untagged, _ = a.cmd(b"h NOOP")
    assert untagged == [b"* 2 EXPUNGE\r\n"]
    untagged, _ = a.cmd(b"i FETCH 1:* (UID)")
    assert untagged == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 3)\r\n", b"* 3 FETCH (UID 4)\r\n"]
    # a UID command may carry it (RFC 3501 §7.4.1 note)
    b.cmd(b"x2 STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd(b"y2 EXPUNGE")
    untagged, _ = a.cmd(b"j UID FETCH 1:* (FLAGS)")
    assert untagged[-1] == b"* 1 EXPUNGE\r\n"
    a.close()
    b.close()


def test_flag_changes_and_new_mail_reach_other_sessions(server):
    server.deliver("alice", message("one"))
    a = Raw(server.port, login="alice@city.test")
    b = Raw(server.port, login="alice@city.test")
    a.cmd(b"s SELECT INBOX")
    b.cmd(b"s SELECT INBOX")
    b.cmd(b"x STORE 1 +FLAGS (\\Flagged $Urgent)")
    server.deliver("alice", message("two"))
    untagged, _ = a.cmd(b"n NOOP")
    assert untagged[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Urgent)\r\n"  # a new keyword
    assert untagged[1].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Flagged $Urgent")
    assert untagged[2:] == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]  # both are recent for this session
    assert a.cmd(b"m NOOP")[0] == []  # told once
    a.close()
    b.close()


def idle_until(c: IMAPClient, wanted: tuple[int, bytes], timeout: float = LIVENESS) -> list:
    """IDLE responses until ``wanted`` is among them; fail after ``timeout`` (it only catches a hang)."""
    responses: list = []
    deadline = time.monotonic() + timeout
    while wanted not in responses:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted} during IDLE; got {responses}"
        responses += c.idle_check(timeout=left)
    return responses


def test_idle_announces_delivery_and_expunge(server):
    """How fast the wake-up comes is a figure of benchmarks/latency_bench.py, not a test."""
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX")
    c.idle()
    with ThreadPoolExecutor(1) as pool:  # delivered while the client waits in IDLE
        delivered = pool.submit(server.deliver, "alice", message("new mail"))
        responses = idle_until(c, (1, b"EXISTS"))
        delivered.result(LIVENESS)  # and the delivery itself raised nothing
    assert (1, b"RECENT") in responses or (1, b"RECENT") in idle_until(c, (1, b"RECENT"))
    c.idle_done()
    # an expunge by another session arrives during IDLE too (IDLE allows EXPUNGE)
    other = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    other.login("alice@city.test", PASSWORD)
    other.select_folder("INBOX")
    c.idle()
    other.delete_messages([1])
    other.expunge()
    idle_until(c, (1, b"EXPUNGE"))
    c.idle_done()
    for x in (c, other):
        x.logout()


def test_condstore_changedsince_and_unchangedsince(server):
    for i in range(3):
        server.deliver("alice", message(f"m{i}"))
    c = Raw(server.port, login="alice@city.test")
    untagged, tagged = c.cmd(b"s SELECT INBOX (CONDSTORE)")  # RFC 7162 §3.1.8
    hms = [u for u in untagged if b"HIGHESTMODSEQ" in u]
    assert hms and tagged.startswith(b"s OK [READ-WRITE]")
    base = int(hms[0].split(b"HIGHESTMODSEQ ")[1].split(b"]")[0])
    untagged, _ = c.cmd(b"a STORE 2 +FLAGS (\\Seen)")
    assert untagged[0].startswith(b"* 2 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (")
    untagged, _ = c.cmd(b"b FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % base)
    assert len(untagged) == 1 and untagged[0].startswith(b"* 2 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (")
    untagged, tagged = c.cmd(b"c STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Answered)" % base)
    assert tagged.startswith(b"c OK [MODIFIED 2]")  # RFC 7162 §3.1.3
    assert [u.split(b" (")[0] for u in untagged] == [b"* 1 FETCH", b"* 3 FETCH"]  # MODSEQ even when silent
    assert c.cmd(b"d STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)")[1].startswith(b"d OK [MODIFIED 1]")
    c.close()


def test_qresync_resynchronises_after_changes(server):
    for i in range(5):
        server.deliver("alice", message(f"m{i}"))
    c = Raw(server.port, login="alice@city.test")
    assert c.cmd(b"e ENABLE QRESYNC")[0] == [b"* ENABLED QRESYNC\r\n"]
    untagged, _ = c.cmd(b"s SELECT INBOX")
    uidvalidity = int(next(u for u in untagged if b"UIDVALIDITY" in u).split(b"UIDVALIDITY ")[1].split(b"]")[0])
    modseq = int(next(u for u in untagged if b"HIGHESTMODSEQ" in u).split(b"HIGHESTMODSEQ ")[1].split(b"]")[0])
    c.cmd(b"l LOGOUT")
    c.close()
    # while the phone is away: a flag change, an expunge, new mail
    other = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    other.login("alice@city.test", PASSWORD)
    other.select_folder("INBOX")
    other.add_flags([2], [b"\\Seen"])
    other.delete_messages([4])
    other.expunge()
    other.logout()
    server.deliver("alice", message("m5"))
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"e ENABLE QRESYNC")
    untagged, tagged = c.cmd(b"s SELECT INBOX (QRESYNC (%d %d 1:5))" % (uidvalidity, modseq))  # RFC 7162 §3.2.5
    assert tagged.startswith(b"s OK")
    assert b"* VANISHED (EARLIER) 4\r\n" in untagged
    fetches = [u for u in untagged if b" FETCH " in u]
    assert len(fetches) == 2 and fetches[0].startswith(b"* 2 FETCH (UID 2 FLAGS (\\Seen")
    assert fetches[1].startswith(b"* 5 FETCH (UID 6 FLAGS (")  # the new message is a change too
    assert b"* 5 EXISTS\r\n" in untagged
    # UID FETCH ... (CHANGEDSINCE VANISHED) gives the same from the selected state (RFC 7162 §3.2.6)
    untagged, _ = c.cmd(b"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    assert untagged[0] == b"* VANISHED (EARLIER) 4\r\n" and len(untagged) == 3
    # with QRESYNC on, expunges are VANISHED, not EXPUNGE (RFC 7162 §3.2.10)
    c.cmd(b"g UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = c.cmd(b"h EXPUNGE")
    assert untagged == [b"* VANISHED 1\r\n"]
    assert c.cmd(b"i SELECT INBOX (QRESYNC (1 1))")[0][0] == b"* OK [CLOSED] Previous mailbox closed\r\n"
    c.close()


def test_qresync_needs_enable(server):
    c = Raw(server.port, login="alice@city.test")
    assert c.cmd(b"s SELECT INBOX (QRESYNC (1 1))")[1].startswith(b"s BAD")
    c.cmd(b"t SELECT INBOX")
    assert c.cmd(b"u UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")[1].startswith(b"u BAD")
    c.close()


def test_deleting_a_selected_mailbox_ends_the_other_session(server):
    a = Raw(server.port, login="alice@city.test")
    a.cmd(b"c CREATE Temp")
    a.cmd(b"s SELECT Temp")
    b = Raw(server.port, login="alice@city.test")
    b.cmd(b"d DELETE Temp")
    a.send(b"n NOOP\r\n")
    assert a.line().startswith(b"* BYE")
    assert a.line() == b""
    b.close()


@pytest.mark.slow
@pytest.mark.parametrize("sessions", [5])
def test_many_sessions_agree(server, sessions):
    """Several sessions change one folder at once; afterwards every view matches the store."""
    for i in range(20):
        server.deliver("alice", message(f"m{i}"))
    clients = []
    for _ in range(sessions):
        c = IMAPClient("127.0.0.1", port=server.port, ssl=False)
        c.login("alice@city.test", PASSWORD)
        c.select_folder("INBOX")
        clients.append(c)

    def work(k: int, c: IMAPClient) -> None:
        c.add_flags([k + 1, k + 6], [b"\\Deleted"])
        c.expunge()
        c.add_flags(c.search("ALL")[:3], [f"$k{k}".encode()])

    with ThreadPoolExecutor(sessions) as pool:  # .result() re-raises a session's error, and waits for it
        for done in [pool.submit(work, k, c) for k, c in enumerate(clients)]:
            done.result(LIVENESS)
    expected = None
    for c in clients:
        c.noop()
        got = sorted(c.search("ALL"))
        expected = expected or got
        assert got == expected and len(got) == 10
    for c in clients:
        c.logout()


def test_idle_wakes_on_smtp_delivery(tmp_path):
    """The whole path: SMTP DATA from another server, accept(), the store, the bus, IDLE (RFC 2177)."""
    import smtplib

    from .harness import ImapServer

    pytest.importorskip("mailserver.smtp.server")
    srv = ImapServer(tmp_path, whole_server=True).start()
    try:
        c = IMAPClient("127.0.0.1", port=srv.port, ssl=False)
        c.login("alice@city.test", PASSWORD)
        c.select_folder("INBOX")
        c.idle()
        host, port = srv.smtp.addresses["smtp"]
        with smtplib.SMTP(host, port, timeout=30) as s:
            s.sendmail("sender@example.org", ["alice@city.test"], message("Over SMTP", "Sent by a peer server",
                                                                        sender="sender@example.org"))
        idle_until(c, (1, b"EXISTS"))  # the 250 to DATA came after the commit; the wake-up follows
        c.idle_done()
        got = c.fetch([1], ["BODY.PEEK[TEXT]", "ENVELOPE"])[1]
        assert got[b"ENVELOPE"].subject == b"Over SMTP" and b"Sent by a peer server" in got[b"BODY[TEXT]"]
        c.logout()
    finally:
        srv.stop()
