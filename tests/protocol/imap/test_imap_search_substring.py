"""SEARCH BODY/TEXT/FROM as RFC 3501 §6.4.4 words them, through imapclient and imaplib over loopback.

- BODY: "contains the specified string in the body of the message" (not the header);
- TEXT: "in the header or body of the message" (every header field);
- FROM/TO/CC/BCC: "in the envelope structure's FROM field" (the parsed address);
- "In all search keys that use strings, a message matches the key if the string is a
  substring of the field. The matching is case-insensitive."
"""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient

from .harness import PASSWORD, message


@pytest.fixture(scope="module")
def server(module_server):
    """One server for the module: its tests only read the folder (one server per test cost most of their time)."""
    return module_server


@pytest.fixture(scope="module")
def box(server):
    """1 asdfghjkl in the body; 2 zxcvbnm in the subject only; 3 comments in From; 4 zxcvbnm body, custom header;
    5 张三 display name; 6 a long body whose needle is past the substring index's cut."""
    server.deliver("alice", message("Keyboard rows", "The home row: asdfghjkl and more.", sender="qwert@city.test"))
    server.deliver("alice", message("zxcvbnm in the subject", "Nothing here.", sender="yuiop@city.test"))
    server.deliver("alice", message("Comments", "Hello.", sender="<user-from (comment)@ (comment) domain.org>"))
    server.deliver("alice", message("Bottom", "Bottom row ZXCVBNM.", extra="X-Ticket: Tracking-Number-8812\r\n"))
    server.deliver("alice", message("问候", "你好。", sender="=?utf-8?b?5byg5LiJ?= <zhangsan@city.test>"))
    long_body = ("filler words " * 8000) + "past the cut: wxyzzyxw unusualword\n"
    server.deliver("alice", message("Long", long_body))
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False, use_uid=False)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX")
    yield c
    c.logout()


@pytest.mark.parametrize("criteria, expected", [
    # substrings, not words, case-insensitive (the two examples)
    (["TEXT", "sdfghjk"], [1]), (["BODY", "xcvbn"], [4]), (["BODY", "SDFGH"], [1]),
    # BODY is the body only: the subject of 2 and the sender of 1 are not in it
    (["BODY", "subject"], []), (["BODY", "qwert"], []), (["BODY", "Keyboard"], []),
    # TEXT is the header and the body: the subject, any field, field names too
    (["TEXT", "xcvbn"], [2, 4]), (["TEXT", "number-88"], [4]), (["TEXT", "x-ticket"], [4]),
    (["TEXT", "eyboar"], [1]), (["TEXT", "yuiop"], [2]),
    # needles shorter than a trigram: substring all the same
    (["BODY", "jk"], [1]), (["BODY", "Q"], []), (["TEXT", "jk"], [1]),
    # FROM is the parsed address, comments and folding gone; the display name still matches
    (["FROM", "user-from@domain.org"], [3]), (["FROM", "SER-FROM@DOM"], [3]), (["FROM", "comment"], []),
    (["FROM", "张三"], [5]), (["FROM", "zhangsan@city"], [5]),
    (["TO", "alice@city.test"], [1, 2, 3, 4, 5, 6]), (["CC", "alice"], []),
    # HEADER FROM is the header text (what comes after the colon)
    (["HEADER", "From", "(comment)@ (comment)"], [3]),
    # past the substring index's cut a word or a word's start is still found
    (["BODY", "unusualword"], [6]), (["BODY", "unusual"], [6]),
])
def test_substring_keys(box, criteria, expected):
    ascii_only = all(x.isascii() for x in criteria)
    assert box.search(criteria, charset=None if ascii_only else "UTF-8") == expected


def test_nothing_found_that_is_not_there(box):
    assert box.search(["BODY", "asdfghjklx"]) == []
    assert box.search(["TEXT", "sdfghjk zxcvbnm"]) == []
    assert box.search(["OR", "BODY", "xcvbn", "NOT", "TEXT", "sdfghjk"]) == [2, 3, 4, 5, 6]


def test_imaplib_uid_search_body_substring(server, box):
    c = imaplib.IMAP4("127.0.0.1", server.port)
    c.login("alice@city.test", PASSWORD)
    c.select("INBOX", readonly=True)
    typ, data = c.uid("SEARCH", "BODY", "xcvbn")
    assert typ == "OK" and data == [b"4"]
    typ, data = c.uid("SEARCH", "TEXT", '"row: ASDF"')
    assert typ == "OK" and data == [b"1"]
    assert c.logout()[0] == "BYE"
