"""Parser events for SORT / THREAD (RFC 5256 §5), ESORT (RFC 5267 §4) and MULTIAPPEND (RFC 3502 §6), byte for byte."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mailserver.imap import commands as c
from mailserver.imap.command_syntax import MAX_APPEND_MESSAGES
from mailserver.imap.grammar import BadCharset, Command, NeedContinuation, ParseError

from .test_imap_grammar import feed


def test_sort_and_esort():
    assert feed(b"a SORT (REVERSE DATE subject) UTF-8 ALL\r\n")[0] == Command(
        "a", c.Sort((("DATE", True), ("SUBJECT", False)), c.SearchAll(), "UTF-8"))
    assert feed(b"b UID SORT RETURN (MIN COUNT) (DISPLAYFROM) us-ascii UNSEEN FROM bob\r\n")[0] == Command(
        "b", c.Sort((("DISPLAYFROM", False),), c.SearchAnd((c.SearchFlag("\\Seen", False),
                                                              c.SearchHeader("from", "bob"))),
                    "US-ASCII", True, ("MIN", "COUNT")))
    # RFC 5256 §5: the charset is mandatory and NO [BADCHARSET] when unknown, not BAD
    assert feed(b"c SORT (DATE) KOI8-Q ALL\r\n")[0] == BadCharset("c", "KOI8-Q")
    [ev] = feed(b"d SORT (DATE) UTF-8 SUBJECT {6}\r\n", eof=False)
    assert ev == NeedContinuation("d", "SORT", 6)
    for bad in (b"e SORT () UTF-8 ALL", b"e SORT (NAME) UTF-8 ALL", b"e SORT (DATE) UTF-8",
                b"e SORT RETURN (PARTIAL) (DATE) UTF-8 ALL", b"e SORT (REVERSE REVERSE DATE) UTF-8 ALL"):
        assert isinstance(feed(bad + b"\r\n")[0], ParseError), bad


def test_thread():
    assert feed(b"a THREAD references UTF-8 SINCE 1-Feb-1994\r\n")[0].command.algorithm == "REFERENCES"
    assert feed(b"b UID THREAD ORDEREDSUBJECT UTF-8 ALL\r\n")[0] == Command(
        "b", c.Thread("ORDEREDSUBJECT", c.SearchAll(), "UTF-8", True))
    assert isinstance(feed(b"c THREAD JWZ UTF-8 ALL\r\n")[0], ParseError)


def test_multiappend_literals_in_any_form():
    """RFC 3502 §6 example shape: each message with its own flags, date and (synchronising or not) literal."""
    data = (b'A003 APPEND saved-messages (\\Seen) {5}\r\nabcde (\\Flagged) " 7-Feb-1994 21:52:25 -0800" {3}\r\n'
            b"xyz ~{2+}\r\nq\x00\r\n")
    events = feed(data)
    assert events[:2] == [NeedContinuation("A003", "APPEND", 5), NeedContinuation("A003", "APPEND", 3)]
    when = datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(-timedelta(hours=8)))
    assert events[2] == Command("A003", c.MultiAppend("saved-messages", (
        c.Append("saved-messages", b"abcde", ("\\Seen",)),
        c.Append("saved-messages", b"xyz", ("\\Flagged",), when),
        c.Append("saved-messages", b"q\x00", (), None, True))))
    assert feed(b"a APPEND INBOX {1+}\r\nx\r\n")[0] == Command("a", c.Append("INBOX", b"x"))  # one: plain APPEND


def test_multiappend_message_count_is_bounded():
    many = b"a APPEND INBOX" + b" {1+}\r\nx" * (MAX_APPEND_MESSAGES + 1) + b"\r\n"
    ev, _closed = feed(many)
    assert isinstance(ev, ParseError) and "more than" in ev.message
