"""SORT, ESORT, THREAD (RFC 5256, 5267, 5957) and MULTIAPPEND (RFC 3502): exact transcripts and real clients over loopback."""

from __future__ import annotations

import imaplib
import re
from datetime import datetime, timezone

import pytest
from imapclient import IMAPClient

from .harness import PASSWORD, Raw, message

# A small known folder. After the first message is expunged, message n has UID n + 1.
#  seq  subject                 from   Date (UTC)  references
#  1    Re: beta                carol  12:00
#  2    alpha                   Amy    10:00
#  3    Re: alpha               bob    11:00       <2@city.test>
#  4    [list] gamma (fwd)      dave   09:00       <missing@city.test>
#  5    gamma                   eve    13:00       <missing@city.test>
FOLDER = [
    ("Re: beta", "carol@city.test", "12:00", ""),
    ("alpha", "Amy <amy@city.test>", "10:00", ""),
    ("Re: alpha", "bob@city.test", "11:00", "References: <2@city.test>\r\n"),
    ("[list] gamma (fwd)", "dave@city.test", "09:00", "References: <missing@city.test>\r\n"),
    ("gamma", "eve@city.test", "13:00", "References: <missing@city.test>\r\n"),
]


def fill(server, user: str = "alice") -> None:
    server.deliver(user, message("to be expunged", msgid="0"))
    for i, (subject, sender, hour, extra) in enumerate(FOLDER, 1):
        server.deliver(user, message(subject, f"body {i}", sender=sender, msgid=str(i), extra=extra,
                                     date=f"Mon, 02 Nov 2026 {hour}:00 +0000"))
    c = Raw(server.port, login=f"{user}@city.test")
    c.cmd(b"s SELECT INBOX")
    assert c.cmd(b"d STORE 1 +FLAGS.SILENT (\\Deleted)")[1].startswith(b"d OK")
    assert c.cmd(b"e EXPUNGE")[1].startswith(b"e OK")
    c.close()


def _selected(server):
    c = Raw(server.port, login="alice@city.test")
    assert c.cmd(b"s SELECT INBOX")[1].startswith(b"s OK")
    return c


@pytest.fixture
def folder(server):
    fill(server)
    c = _selected(server)
    yield c
    c.close()


@pytest.fixture(scope="module")
def filled(module_server):
    """The folder above, filled once for the module's read-only transcripts (issue 14 point 6)."""
    fill(module_server)
    return module_server


@pytest.fixture
def read_only_folder(filled):
    c = _selected(filled)
    yield c
    c.close()


@pytest.mark.parametrize(("command", "untagged"), [
    (b"SORT (SUBJECT) UTF-8 ALL", b"* SORT 2 3 1 4 5\r\n"),  # base subjects alpha, alpha, beta, gamma, gamma
    (b"SORT (DATE) US-ASCII ALL", b"* SORT 4 2 3 1 5\r\n"),
    (b"SORT (REVERSE DATE) UTF-8 ALL", b"* SORT 5 1 3 2 4\r\n"),
    (b"SORT (FROM) UTF-8 ALL", b"* SORT 2 3 1 4 5\r\n"),  # addr-mailbox: amy bob carol dave eve
    (b"SORT (DISPLAYFROM) UTF-8 ALL", b"* SORT 2 3 1 4 5\r\n"),  # "Amy", then addresses
    (b"SORT (REVERSE SUBJECT ARRIVAL) UTF-8 ALL", b"* SORT 4 5 1 2 3\r\n"),
    (b"SORT (SIZE) UTF-8 SUBJECT gamma", b"* SORT 5 4\r\n"),
    (b"SORT (SUBJECT) UTF-8 FROM bob", b"* SORT 3\r\n"),
    (b"SORT (TO CC ARRIVAL) UTF-8 ALL", b"* SORT 1 2 3 4 5\r\n"),  # all equal: sequence order
    (b"SORT (DATE) UTF-8 SUBJECT nothing-matches", b"* SORT\r\n"),
    (b"UID SORT (SUBJECT) UTF-8 ALL", b"* SORT 3 4 2 5 6\r\n"),
    (b"UID SORT (DATE) UTF-8 UID 5:*", b"* SORT 5 6\r\n"),
    # RFC 5267 §3: ESORT; MIN/MAX are the first and last in sort order, ALL keeps the order
    (b"SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL",
     b'* ESEARCH (TAG "t") MIN 4 MAX 5 COUNT 5 ALL 4,2:3,1,5\r\n'),
    (b"UID SORT RETURN (ALL) (REVERSE SUBJECT) UTF-8 ALL", b'* ESEARCH (TAG "t") UID ALL 5:6,2:4\r\n'),
    (b"SORT RETURN () (SUBJECT) UTF-8 ALL", b'* ESEARCH (TAG "t") ALL 2:3,1,4:5\r\n'),
    (b"SORT RETURN (COUNT) (SUBJECT) UTF-8 SUBJECT nothing-matches", b'* ESEARCH (TAG "t") COUNT 0\r\n'),
    # RFC 5256 §2: THREAD
    (b"THREAD REFERENCES UTF-8 ALL", b"* THREAD ((4)(5))(2 3)(1)\r\n"),
    (b"THREAD ORDEREDSUBJECT UTF-8 ALL", b"* THREAD (4 5)(2 3)(1)\r\n"),
    (b"UID THREAD REFERENCES UTF-8 ALL", b"* THREAD ((5)(6))(3 4)(2)\r\n"),
    (b"THREAD REFERENCES UTF-8 NOT FROM bob", b"* THREAD ((4)(5))(2)(1)\r\n"),  # 3 is not threaded
    (b"THREAD ORDEREDSUBJECT UTF-8 SUBJECT nothing-matches", b"* THREAD\r\n"),
])
def test_sort_and_thread_transcripts(read_only_folder, command, untagged):
    name = b" ".join(command.split()[:2] if command.startswith(b"UID ") else command.split()[:1])
    assert read_only_folder.cmd(b"t " + command) == ([untagged], b"t OK " + name + b" completed\r\n")


def test_sort_errors(folder):
    c = folder
    _, tagged = c.cmd(b"a SORT (SUBJECT) KOI8-Q ALL")  # RFC 5256 §3: NO [BADCHARSET] for an unknown charset
    assert tagged.startswith(b"a NO [BADCHARSET (")
    for bad in (b"b SORT (SPAM) UTF-8 ALL", b"b SORT () UTF-8 ALL", b"b SORT (SUBJECT) UTF-8",
                b"b SORT SUBJECT UTF-8 ALL", b"b SORT RETURN (PARTIAL) (DATE) UTF-8 ALL",
                b"b THREAD JWZ UTF-8 ALL", b"b THREAD REFERENCES UTF-8", b"b SORT (REVERSE) UTF-8 ALL"):
        untagged, tagged = c.cmd(bad)
        assert untagged == [] and tagged.startswith(b"b BAD "), (bad, tagged)
    c.cmd(b"u UNSELECT")
    assert c.cmd(b"n SORT (DATE) UTF-8 ALL")[1].startswith(b"n BAD")  # RFC 5256: only in the selected state
    assert c.cmd(b"z NOOP")[1].startswith(b"z OK")


def test_esort_save_and_modseq(folder):
    """RFC 5182 §2.4 SAVE with SORT keeps the UIDs for "$"; RFC 7162 §3.1.5 MODSEQ in SORT and ESORT answers."""
    c = folder
    assert c.cmd(b"a SORT RETURN (SAVE) (DATE) UTF-8 FROM bob") == ([], b"a OK SORT completed\r\n")
    untagged, _ = c.cmd(b"b FETCH $ (UID)")
    assert untagged == [b"* 3 FETCH (UID 4)\r\n"]
    assert c.cmd(b"c SORT RETURN (SAVE MIN) (REVERSE DATE) UTF-8 ALL")[0] == [b'* ESEARCH (TAG "c") MIN 5\r\n']
    assert c.cmd(b"d UID FETCH $ (UID)")[0] == [b"* 5 FETCH (UID 6)\r\n"]  # MIN alone: only it is saved
    untagged, _ = c.cmd(b"e SORT (DATE) UTF-8 MODSEQ 1")
    assert re.fullmatch(rb"\* OK \[HIGHESTMODSEQ \d+\] Highest\r\n", untagged[0])  # RFC 7162 §3.1: enabled now
    assert re.fullmatch(rb"\* SORT 4 2 3 1 5 \(MODSEQ \d+\)\r\n", untagged[1])
    untagged, _ = c.cmd(b"f SORT RETURN (COUNT) (DATE) UTF-8 MODSEQ 1")
    assert re.fullmatch(rb'\* ESEARCH \(TAG "f"\) COUNT 5 MODSEQ \d+\r\n', untagged[0])


def test_capabilities_advertised(server):
    c = Raw(server.port, login="alice@city.test")
    caps = c.cmd(b"c CAPABILITY")[0][0].split()
    for cap in (b"SORT", b"SORT=DISPLAY", b"THREAD=REFERENCES", b"THREAD=ORDEREDSUBJECT", b"ESORT", b"MULTIAPPEND"):
        assert cap in caps
    c.close()


def test_sort_sends_no_expunge_before_its_answer(server, folder):
    """RFC 3501 §7.4.1 as for SEARCH: the sequence numbers in * SORT must be the ones the client knows."""
    other = Raw(server.port, login="alice@city.test")
    other.cmd(b"s SELECT INBOX")
    other.cmd(b"d STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.cmd(b"e EXPUNGE")
    other.close()
    untagged, tagged = folder.cmd(b"t SORT (SUBJECT) UTF-8 ALL")
    assert tagged.startswith(b"t OK") and len(untagged) == 1
    # Message 1 is still numbered for this session; its body is gone with the last reference,
    # so it sorts as an empty message (RFC 2180 §4.1.3); the others keep their order.
    numbers = untagged[0].split()[2:]
    assert sorted(numbers) == [b"1", b"2", b"3", b"4", b"5"]
    assert [n for n in numbers if n != b"1"] == [b"2", b"3", b"4", b"5"]
    untagged, _ = folder.cmd(b"n NOOP")
    assert untagged[0] == b"* 1 EXPUNGE\r\n"
    assert folder.cmd(b"t SORT (SUBJECT) UTF-8 ALL")[0] == [b"* SORT 1 2 3 4\r\n"]


# ------------------------------------------------------------------ MULTIAPPEND (RFC 3502)


def _uidvalidity(c: Raw, box: bytes = b"INBOX") -> int:
    untagged, _ = c.cmd(b"v STATUS " + box + b" (UIDVALIDITY MESSAGES)")
    return int(re.search(rb"UIDVALIDITY (\d+)", untagged[0]).group(1))


def test_multiappend_transcript(server):
    c = Raw(server.port, login="alice@city.test")
    v = _uidvalidity(c)
    m1, m2, m3 = (message(f"multi {i}", msgid=f"m{i}") for i in (1, 2, 3))
    c.send(b'm APPEND INBOX (\\Seen) {%d}\r\n' % len(m1))
    assert c.line() == b"+ Ready for literal data\r\n"
    c.send(m1 + b' (\\Flagged $Work) "02-Nov-2026 10:00:00 +0800" {%d}\r\n' % len(m2))
    assert c.line() == b"+ Ready for literal data\r\n"
    c.send(m2 + b" {%d+}\r\n" % len(m3) + m3 + b"\r\n")
    assert c.until(b"m") == ([], b"m OK [APPENDUID %d 1:3] APPEND completed\r\n" % v)
    c.cmd(b"s SELECT INBOX")
    untagged, _ = c.cmd(b"f FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    flags = [set(re.search(rb"FLAGS \(([^)]*)\)", u).group(1).split()) - {b"\\Recent"} for u in untagged]
    assert flags == [{b"\\Seen"}, {b"\\Flagged", b"$Work"}, set()]
    assert b'INTERNALDATE " 2-Nov-2026 02:00:00 +0000"' in untagged[1]  # stored in UTC
    assert [re.search(rb"Subject: ([^\r]*)", u).group(1) for u in untagged] == [b"multi 1", b"multi 2", b"multi 3"]
    c.close()


def test_multiappend_is_all_or_nothing(server):
    server.run(server.add_account("carl", quota_messages=2))
    c = Raw(server.port, login="carl@city.test")
    msgs = [message(f"q{i}", msgid=f"q{i}") for i in range(3)]
    cmd = b"q APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(m) + m for m in msgs)
    untagged, tagged = c.cmd(cmd)
    assert tagged.startswith(b"q NO [OVERQUOTA]")  # three messages over a quota of two: none is appended
    assert b"MESSAGES 0" in c.cmd(b"s STATUS INBOX (MESSAGES)")[0][0]
    cmd = b"e APPEND INBOX {%d+}\r\n%s {0+}\r\n" % (len(msgs[0]), msgs[0])  # RFC 3502 §3: an empty literal cancels
    assert c.cmd(cmd)[1].startswith(b"e NO")
    cmd = b"n APPEND Nowhere {%d+}\r\n%s {%d+}\r\n%s" % (len(msgs[0]), msgs[0], len(msgs[1]), msgs[1])
    assert c.cmd(cmd)[1].startswith(b"n NO [TRYCREATE]")
    assert b"MESSAGES 0" in c.cmd(b"s STATUS INBOX (MESSAGES)")[0][0]
    cmd = b"k APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(m) + m for m in msgs[:2])
    v = _uidvalidity(c)
    assert c.cmd(cmd)[1] == b"k OK [APPENDUID %d 1:2] APPEND completed\r\n" % v  # within the quota: both
    c.close()


# ------------------------------------------------------------------ real clients


def test_imaplib_sort_and_thread(server):
    fill(server)
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
    c.login("alice@city.test", PASSWORD)
    c.select("INBOX")
    assert c.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"2 3 1 4 5"])
    assert c.sort("(REVERSE DATE)", "UTF-8", "ALL") == ("OK", [b"5 1 3 2 4"])
    assert c.uid("SORT", "(DATE)", "UTF-8", "ALL") == ("OK", [b"5 3 4 2 6"])
    assert c.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"((4)(5))(2 3)(1)"])
    assert c.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "ALL") == ("OK", [b"(5 6)(3 4)(2)"])
    c.logout()


def test_imapclient_sort_thread_multiappend(server):
    fill(server)
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as c:
        c.login("alice@city.test", PASSWORD)
        assert c.has_capability("SORT") and c.has_capability("THREAD=REFERENCES")
        c.select_folder("INBOX")
        assert c.sort(["SUBJECT"], "ALL", charset="UTF-8") == [3, 4, 2, 5, 6]  # UIDs
        assert c.sort(["REVERSE DATE"], ["FROM", "bob"]) == [4]
        assert c.thread("REFERENCES", "ALL", "UTF-8") == (((5,), (6,)), (3, 4), (2,))  # a dummy parent
        assert c.thread("ORDEREDSUBJECT", "ALL", "UTF-8") == ((5, 6), (3, 4), (2,))
        c.create_folder("Batch")
        when = datetime(2026, 3, 4, 9, 15, tzinfo=timezone.utc)
        resp = c.multiappend("Batch", [message("one", msgid="b1").decode(),
                                       {"msg": message("two", msgid="b2").decode(), "flags": ["\\Seen"],
                                        "date": when}])
        status, [text] = resp
        assert status == "OK" and re.fullmatch(rb"\[APPENDUID \d+ 1:2\] APPEND completed", text)
        c.select_folder("Batch")
        got = c.fetch([1, 2], ["FLAGS", "INTERNALDATE", "ENVELOPE"])
        assert [got[u][b"ENVELOPE"].subject for u in sorted(got)] == [b"one", b"two"]
        assert set(got[2][b"FLAGS"]) - {b"\\Recent"} == {b"\\Seen"}
        assert got[2][b"INTERNALDATE"].replace(tzinfo=None) == datetime(2026, 3, 4, 9, 15)


def test_multiappend_total_is_bounded_by_appendlimit(tmp_path):
    """The literals of one MULTIAPPEND together stay within APPENDLIMIT (+1 KiB): memory per command is bounded."""
    from .harness import ImapServer

    srv = ImapServer(tmp_path, limits={"max_message_size": 4000}).start()
    try:
        c = Raw(srv.port, login="alice@city.test")
        part = message("x", "y" * 1500, msgid="x")  # each under the limit, three together over it
        c.send(b"t APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(part) + part for _ in range(3)) + b"\r\n")
        assert c.until(b"t")[1].startswith(b"t NO [TOOBIG]")
        assert c.cmd(b"s STATUS INBOX (MESSAGES)")[0] == [b"* STATUS INBOX (MESSAGES 0)\r\n"]
        two = b"u APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(part) + part for _ in range(2))
        assert c.cmd(two)[1].startswith(b"u OK [APPENDUID ")
        c.close()
    finally:
        srv.stop()
