"""SEARCH with imapclient and raw bytes: every RFC 3501 key, CHARSET UTF-8 and GB2312/GBK, ESEARCH, SEARCHRES, MODSEQ."""

from __future__ import annotations

from datetime import date

import pytest
from imapclient import IMAPClient

from tests.unit.mime.samples import GBK_SUBJECT, gbk_message

from .harness import PASSWORD, Raw, message


@pytest.fixture(scope="module")
def server(module_server):
    """One server for the module: its tests only read the folder (one server per test cost most of their time)."""
    return module_server


@pytest.fixture(scope="module")
def box(server):
    """INBOX: 1 budget (seen, flagged), 2 会议通知 (answered), 3 GBK tax notice, 4 big draft, 5 deleted+keyword."""
    server.deliver("alice", message("Budget review", "Numbers for the quarterly budget.", sender="bob@city.test",
                                    date="Mon, 02 Nov 2026 10:00:00 +0800", extra="X-Priority: 1\r\n"), flags=1 | 4)
    server.deliver("alice", message("会议通知", "请各部门负责人参加周五的会议。", to="staff@city.test",
                                    date="Tue, 03 Nov 2026 09:00:00 +0800", extra="Cc: dave@city.test\r\n"), flags=2)
    server.deliver("alice", gbk_message())
    server.deliver("alice", message("Large draft", "x" * 20000, date="Wed, 04 Nov 2026 09:00:00 +0800"), flags=16)
    server.deliver("alice", message("Old junk", "Reconciliation of accounts.", msgid="junk"), flags=8)
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False, use_uid=False)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX")
    c.add_flags([5], [b"$Junk"])
    yield c
    c.logout()


@pytest.mark.parametrize("criteria, expected", [
    ("ALL", [1, 2, 3, 4, 5]),
    ("SEEN", [1]), ("UNSEEN", [2, 3, 4, 5]), ("FLAGGED", [1]), ("UNFLAGGED", [2, 3, 4, 5]),
    ("ANSWERED", [2]), ("UNANSWERED", [1, 3, 4, 5]), ("DELETED", [5]), ("UNDELETED", [1, 2, 3, 4]),
    ("DRAFT", [4]), ("UNDRAFT", [1, 2, 3, 5]), ("KEYWORD $Junk", [5]), ("UNKEYWORD $junk", [1, 2, 3, 4]),
    ("RECENT", [1, 2, 3, 4, 5]), ("NEW", [2, 3, 4, 5]), ("OLD", []),
    ("SUBJECT budget", [1]), ("SUBJECT BUDGET", [1]), ("FROM bob", [1]), ("FROM zhangsan", [3]),
    ("TO staff", [2]), ("CC dave", [2]), ("BCC anyone", []),
    ('HEADER X-Priority 1', [1]), ('HEADER X-Mailer Foxmail', [3]), ('HEADER Message-ID junk', [5]),
    ('HEADER X-Priority ""', [1]),
    ("BODY quarterly", [1]), ("BODY reconciliation", [5]), ("TEXT budget", [1]),
    ("LARGER 10000", [4]), ("SMALLER 600", [1, 2, 5]),
    ("SENTON 3-Nov-2026", [2]), ("SENTBEFORE 3-Nov-2026", [1, 3, 5]), ("SENTSINCE 3-Nov-2026", [2, 4]),
    ("1:2", [1, 2]), ("2,4:*", [2, 4, 5]), ("UID 1:3", [1, 2, 3]), ("*", [5]),
    ("NOT SEEN NOT DELETED", [2, 3, 4]), ("OR FLAGGED DRAFT", [1, 4]), ("OR (SEEN FLAGGED) (DELETED)", [1, 5]),
    ("NOT (OR SEEN DELETED)", [2, 3, 4]),
])
def test_search_keys(box, criteria, expected):
    assert sorted(box.search(criteria)) == sorted(expected)


def test_internal_date_keys(box):
    today = date.today()
    assert box.search(["SINCE", today]) == [1, 2, 3, 4, 5]
    assert box.search(["ON", today]) == [1, 2, 3, 4, 5]
    assert box.search(["BEFORE", today]) == []


def test_search_chinese_in_utf8_and_gbk(box):
    assert box.search(["SUBJECT", "会议"], charset="UTF-8") == [2]
    assert box.search(["BODY", "负责人"], charset="UTF-8") == [2]
    assert box.search(["SUBJECT", "汇算清缴"], charset="UTF-8") == [3]  # GB2312-encoded subject, found decoded
    gbk = "个人所得税".encode("gbk")
    assert box.search([b"SUBJECT", gbk], charset="GBK") == [3]  # the search string itself in GBK
    assert box.search([b"BODY", "汇算".encode("gb2312")], charset="GB2312") == [3]
    assert box.search([b"TEXT", GBK_SUBJECT[:4].encode("gb18030")], charset="GB18030") == [3]
    assert gbk_message()  # the sample is the Foxmail one


def test_header_keys_match_substrings_inside_words(box):
    assert box.search(["SUBJECT", "udge"]) == [1]  # "Budget review"
    assert box.search(["FROM", "hangsa"]) == [3]  # zhangsan@...
    assert box.search(["SUBJECT", "udgex"]) == []


def test_search_one_chinese_character(box):
    # A surname alone, or one character inside a longer run, is a substring too (RFC 3501 §6.4.4).
    assert box.search(["SUBJECT", "议"], charset="UTF-8") == [2]
    assert box.search(["BODY", "周"], charset="UTF-8") == [2]
    assert box.search(["SUBJECT", "猫"], charset="UTF-8") == []
    assert box.search(["FROM", "张"], charset="UTF-8") == [3]  # 张三, a GBK encoded-word display name


def test_bad_charset_and_bad_syntax(server, box):
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    _, tagged = c.cmd(b"a SEARCH CHARSET KOI8-Z BODY x")
    assert tagged.startswith(b"a NO [BADCHARSET (") and b"UTF-8" in tagged and b"GBK" in tagged
    assert c.cmd(b"b SEARCH FROB")[1].startswith(b"b BAD")
    assert c.cmd(b"c SEARCH SUBJECT")[1].startswith(b"c BAD")
    assert c.cmd(b"d SEARCH 1:9")[1].startswith(b"d OK")  # numbers past EXISTS: none of them match
    c.close()


def test_esearch_and_searchres(server, box):
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    untagged, _ = c.cmd(b"a SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")  # RFC 4731
    assert untagged == [b'* ESEARCH (TAG "a") MIN 2 MAX 5 COUNT 4 ALL 2:5\r\n']
    untagged, _ = c.cmd(b"b UID SEARCH RETURN () FLAGGED")
    assert untagged == [b'* ESEARCH (TAG "b") UID ALL 1\r\n']
    untagged, _ = c.cmd(b"c SEARCH RETURN (COUNT) KEYWORD $Nothing")
    assert untagged == [b'* ESEARCH (TAG "c") COUNT 0\r\n']
    untagged, _ = c.cmd(b"d SEARCH RETURN (SAVE) OR DRAFT FLAGGED")  # RFC 5182: nothing returned
    assert untagged == []
    untagged, _ = c.cmd(b"e FETCH $ (UID)")
    assert untagged == [b"* 1 FETCH (UID 1)\r\n", b"* 4 FETCH (UID 4)\r\n"]
    untagged, _ = c.cmd(b"f SEARCH $ SEEN")
    assert untagged == [b"* SEARCH 1\r\n"]
    c.close()


def test_search_modseq(server, box):
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    untagged, _ = c.cmd(b"a FETCH 5 (MODSEQ)")
    assert untagged[0].startswith(b"* OK [HIGHESTMODSEQ ")  # CONDSTORE enabled while selected (RFC 7162 §3.1)
    modseq = int(untagged[1].split(b"MODSEQ (")[1].split(b")")[0])
    untagged, _ = c.cmd(b"b SEARCH MODSEQ %d" % modseq)  # RFC 7162 §3.1.5
    assert untagged == [b"* SEARCH 5 (MODSEQ %d)\r\n" % modseq]
    untagged, _ = c.cmd(b'c SEARCH MODSEQ "/flags/\\\\draft" all %d' % (modseq + 1))
    assert untagged == [b"* SEARCH\r\n"]
    c.close()
