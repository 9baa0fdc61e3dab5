"""Message commands with imapclient and raw bytes: APPEND, FETCH (every item, sections, partials, BINARY), STORE, COPY, MOVE, EXPUNGE, CLOSE, UNSELECT."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.unit.mime.samples import (
    GBK_BODY,
    gbk_message,
    nested_message,
    rfc822_message,
)

from .harness import PASSWORD, Raw, message


@pytest.fixture
def client(server):
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30)
    c.login("alice@city.test", PASSWORD)
    yield c
    with contextlib.suppress(Exception):  # the test may have logged out already
        c.logout()


def test_append_with_flags_and_date_returns_appenduid(client):
    when = datetime(2025, 3, 4, 9, 15, tzinfo=timezone(timedelta(hours=8)))
    resp = client.append("INBOX", message("appended"), flags=[b"\\Seen", b"$Important"], msg_time=when)
    assert b"[APPENDUID " in resp  # RFC 4315 §3
    uidvalidity = client.folder_status("INBOX", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert resp.startswith(b"[APPENDUID %d 1]" % uidvalidity)
    client.select_folder("INBOX")
    got = client.fetch("1", ["FLAGS", "INTERNALDATE", "RFC822.SIZE"])[1]
    assert set(got[b"FLAGS"]) >= {b"\\Seen", b"$Important"}
    assert got[b"INTERNALDATE"] == when.astimezone().replace(tzinfo=None)  # the same instant, local time
    assert got[b"RFC822.SIZE"] == len(message("appended"))
    with pytest.raises(IMAPClientError, match="TRYCREATE"):
        client.append("No such folder", message("x"))


def test_append_with_literal_plus_and_too_big(tmp_path):
    from .harness import ImapServer

    srv = ImapServer(tmp_path, limits={"max_message_size": 5000}).start()
    try:
        c = Raw(srv.port, login="alice@city.test")
        msg = message("plus")
        c.send(b"a APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")  # RFC 7888: no wait for "+"
        assert c.until(b"a")[1].startswith(b"a OK [APPENDUID")
        c.send(b"b APPEND INBOX {9000}\r\n")  # synchronising: refused before any "+"
        assert c.until(b"b")[1].startswith(b"b NO [TOOBIG]")
        big = b"x" * 9000
        c.send(b"c APPEND INBOX {9000+}\r\n" + big + b"\r\n")  # non-synchronising: skipped, then refused
        assert c.until(b"c")[1].startswith(b"c NO [TOOBIG]")
        assert c.cmd(b"d NOOP")[1].startswith(b"d OK")  # still in step with the client
        c.close()
    finally:
        srv.stop()


def test_fetch_every_simple_item(server, client):
    server.deliver("alice", message("Hello there", "Body line 1\r\nline 2", msgid="m1"))
    client.select_folder("INBOX")
    got = client.fetch("1", ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE",
                             "MODSEQ"])[1]
    assert got[b"SEQ"] == 1 and got[b"MODSEQ"][0] > 0  # imapclient keys the result by the UID it got
    env = got[b"ENVELOPE"]
    assert env.subject == b"Hello there" and env.message_id == b"<m1@city.test>"
    assert env.from_[0].mailbox == b"carol" and env.from_[0].host == b"city.test"
    assert env.sender == env.from_ and env.reply_to == env.from_  # RFC 3501 §7.4.2 defaults
    assert got[b"BODYSTRUCTURE"][:2] == (b"text", b"plain")
    assert got[b"BODY"][:2] == (b"text", b"plain")
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s EXAMINE INBOX")
    for macro, items in ((b"ALL", [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"]),  # RFC 3501 §6.4.5
                         (b"FAST", [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]),
                         (b"FULL", [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"])):
        untagged, _ = c.cmd(b"f FETCH 1 " + macro)
        positions = [untagged[0].find(i + b" ") for i in items]
        assert all(p > 0 for p in positions) and positions == sorted(positions)
    untagged, _ = c.cmd(b"g UID FETCH 1 (INTERNALDATE)")
    assert untagged == [b'* 1 FETCH (UID 1 INTERNALDATE "%s")\r\n' % untagged[0].split(b'"')[1]]
    c.close()
    raw = message("Hello there", "Body line 1\r\nline 2", msgid="m1")
    head, text = raw.split(b"\r\n\r\n", 1)
    got = client.fetch("1", ["RFC822.HEADER", "RFC822.TEXT"])[1]
    assert got[b"RFC822.HEADER"] == head + b"\r\n\r\n" and got[b"RFC822.TEXT"] == text
    assert client.fetch("1", ["RFC822"])[1][b"RFC822"] == raw
    assert b"\\Seen" in client.get_flags("1")[1]  # RFC822 (not .PEEK) sets \Seen


def test_body_sections_and_partials(server, client):
    raw = nested_message()
    server.deliver("alice", raw)
    client.select_folder("INBOX")
    got = client.fetch("1", ["BODY.PEEK[1.1]", "BODY.PEEK[1.2.MIME]", "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
                             "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM TO MIME-VERSION)]", "BODY.PEEK[1]",
                             "BODY.PEEK[TEXT]<0.6>", "BODY.PEEK[]<7.5>", "BODY.PEEK[9]"])[1]
    assert got[b"BODY[1.1]"] == b"Quarterly figures attached."  # the CRLF before a boundary is the boundary's
    assert got[b"BODY[1.2.MIME]"] == b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    assert got[b"BODY[HEADER.FIELDS (SUBJECT FROM)]"] == b"From: Alice <alice@example.com>\r\nSubject: Report\r\n\r\n"
    assert got[b"BODY[HEADER.FIELDS.NOT (SUBJECT FROM TO MIME-VERSION)]"].startswith(b"Content-Type: multipart/mixed")
    assert got[b"BODY[1]"].startswith(b"--inner\r\n")
    assert got[b"BODY[TEXT]<0>"] == b"--oute"  # RFC 3501 §6.4.5 partial: origin only in the name
    assert got[b"BODY[]<7>"] == raw[7:12]
    assert got[b"BODY[9]"] is None  # no such part
    assert b"\\Seen" not in client.get_flags("1")[1]  # .PEEK leaves \Seen alone
    got = client.fetch("1", ["BODY[2]<0.10>"])[1]  # BODY[] without .PEEK sets \Seen, FLAGS come along
    assert b"\\Seen" in got[b"FLAGS"]
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s EXAMINE INBOX")
    untagged, _ = c.cmd(b"f FETCH 1 (BODY.PEEK[]<100000.10>)")
    assert untagged == [b'* 1 FETCH (BODY[]<100000> {0}\r\n)\r\n']  # past the end: empty
    c.close()


def test_rfc822_part_sections(server, client):
    server.deliver("alice", rfc822_message())
    client.select_folder("INBOX")
    got = client.fetch("1", ["BODY.PEEK[2.HEADER.FIELDS (SUBJECT)]", "BODY.PEEK[2.1]", "BODY.PEEK[2.TEXT]<0.4>",
                             "BODY.PEEK[2.HEADER]"])[1]
    assert got[b"BODY[2.HEADER.FIELDS (SUBJECT)]"].startswith(b"Subject: =?gbk?B?")
    assert got[b"BODY[2.1]"] == "这是被转发的正文。".encode("gbk")
    assert got[b"BODY[2.TEXT]<0>"] == b"--in"
    assert got[b"BODY[2.HEADER]"].startswith(b"From: =?gbk?B?")


def test_binary_decodes_transfer_encoding(server, client):
    server.deliver("alice", gbk_message())
    client.select_folder("INBOX")
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    untagged, _ = c.cmd(b"f FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.SIZE[2])")  # RFC 3516
    body = GBK_BODY.encode("gbk")
    assert untagged[0].startswith(b"* 1 FETCH (BINARY[1] {%d}\r\n" % len(body) + body)
    assert b"BINARY.SIZE[1] %d" % len(body) in untagged[0] and b"BINARY.SIZE[2] 304" in untagged[0]
    untagged, _ = c.cmd(b"g FETCH 1 (BINARY.PEEK[2]<0.8>)")
    assert untagged[0] == b"* 1 FETCH (BINARY[2]<0> ~{8}\r\n\xd0\xcf\x11\xe0\x00\x00\x00\x00)\r\n"  # literal8: NUL
    c.close()


def test_store_flags_and_keywords(server, client):
    for i in range(3):
        server.deliver("alice", message(f"m{i}"))
    client.select_folder("INBOX")
    assert client.add_flags([1, 2], [b"\\Flagged", b"$Work"]) == {
        1: (b"\\Flagged", b"$Work", b"\\Recent"), 2: (b"\\Flagged", b"$Work", b"\\Recent")}
    assert client.remove_flags([1], [b"$Work"]) == {1: (b"\\Flagged", b"\\Recent")}
    assert client.set_flags([3], [b"\\Answered", b"\\Draft"]) == {3: (b"\\Answered", b"\\Draft", b"\\Recent")}
    flags = client.get_flags([1, 2, 3])
    assert flags[2] == (b"\\Flagged", b"$Work", b"\\Recent")
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    untagged, _ = c.cmd(b"a STORE 1:2 +FLAGS.SILENT (\\Seen)")
    assert untagged == []
    untagged, _ = c.cmd(b"b UID STORE 3 -FLAGS (\\Draft)")
    assert untagged == [b"* 3 FETCH (UID 3 FLAGS (\\Answered))\r\n"]
    assert c.cmd(b"c STORE 9 +FLAGS (\\Seen)")[1].startswith(b"c BAD")  # beyond EXISTS
    c.cmd(b"x EXAMINE INBOX")
    assert c.cmd(b"d STORE 1 +FLAGS (\\Seen)")[1].startswith(b"d NO")  # read-only
    c.close()


def test_copy_and_move_report_copyuid(server, client):
    for i in range(4):
        server.deliver("alice", message(f"m{i}"))
    client.create_folder("Kept")
    client.select_folder("INBOX")
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    _, tagged = c.cmd(b"k COPY 2:3 Kept")
    assert tagged.startswith(b"k OK [COPYUID ") and tagged.split()[4:6] == [b"2:3", b"1:2]"]  # RFC 4315 §3
    untagged, tagged = c.cmd(b"m UID MOVE 1,4 Trash")  # RFC 6851 §4.3
    assert untagged[0].startswith(b"* OK [COPYUID ") and b" 1,4 1:2]" in untagged[0]
    assert untagged[1:] == [b"* 1 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n"]
    assert tagged.startswith(b"m OK")
    assert c.cmd(b"n COPY 1 Nowhere")[1].startswith(b"n NO [TRYCREATE]")
    c.close()
    assert client.folder_status("Trash", ["MESSAGES"])[b"MESSAGES"] == 2
    assert client.folder_status("Kept", ["MESSAGES"])[b"MESSAGES"] == 2
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 2


def test_expunge_uid_expunge_close_unselect(server, client):
    for i in range(5):
        server.deliver("alice", message(f"m{i}"))
    client.select_folder("INBOX")
    client.add_flags([1, 2, 3], [b"\\Deleted"])
    assert client.uid_expunge([2]) is not None  # RFC 4315 §2.1: only UID 2 goes
    assert client.search("DELETED") == [1, 3]  # UIDs
    resp = client.expunge()
    assert resp[1] == [(1, b"EXPUNGE"), (1, b"EXPUNGE")]  # UIDs 1 and 3: each is message 1 when it goes
    assert client.search("ALL") == [4, 5]
    client.add_flags([4], [b"\\Deleted"])
    client.unselect_folder()  # RFC 3691: no expunge
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 2
    client.select_folder("INBOX")
    client.close_folder()  # RFC 3501 §6.4.2: expunges silently
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 1
    client.select_folder("INBOX", readonly=True)
    assert client.noop()[0].startswith(b"NOOP")
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s EXAMINE INBOX")
    assert c.cmd(b"a EXPUNGE")[1].startswith(b"a NO")
    assert c.cmd(b"b CHECK")[1].startswith(b"b OK")
    c.close()


def test_enable_utf8_append(server):
    c = Raw(server.port, login="alice@city.test")
    msg = "From: 张三@city.test\r\nSubject: 中文\r\n\r\n正文\r\n".encode()
    assert c.cmd(b"a APPEND INBOX UTF8 (~{%d+}\r\n" % len(msg) + msg + b")")[1].startswith(b"a BAD")
    c.cmd(b"b ENABLE UTF8=ACCEPT")
    assert c.cmd(b"c APPEND INBOX UTF8 (~{%d+}\r\n" % len(msg) + msg + b")")[1].startswith(b"c OK [APPENDUID")
    c.close()


def test_header_fetches_are_the_same_from_the_cache(server):
    """The second header fetch is answered from the cached header block: the same octets."""
    raw = nested_message()
    server.deliver("alice", raw)
    head = raw[:raw.index(b"\r\n\r\n") + 4]
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s EXAMINE INBOX")
    items = b"(RFC822.HEADER BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS (SUBJECT to)] BODY.PEEK[HEADER.FIELDS.NOT (to)])"
    first, _ = c.cmd(b"a FETCH 1 " + items)
    second, _ = c.cmd(b"b FETCH 1 " + items)
    assert first == second
    assert first[0].startswith(b"* 1 FETCH (RFC822.HEADER {%d}\r\n" % len(head) + head)
    assert b"BODY[HEADER.FIELDS (SUBJECT to)] {46}\r\nTo: Bob <bob@example.com>\r\nSubject: Report\r\n\r\n" in first[0]
    c.close()
