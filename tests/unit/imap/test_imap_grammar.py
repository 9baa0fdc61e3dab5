"""Exact-byte transcripts for the IMAP command parser: every command family, literals, limits, resynchronisation."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from mailserver.imap import commands as c
from mailserver.imap.clientwire import command_to_bytes, command_to_chunks
from mailserver.imap.commands import SequenceSet as S
from mailserver.imap.syntax import UnusableName
from mailserver.imap.grammar import (
    NEED_DATA,
    BadCharset,
    Command,
    CommandParser,
    ConnectionClosed,
    ContinuationLine,
    LimitExceeded,
    NeedContinuation,
    ParseError,
)


def feed(data: bytes, chunk: int | None = None, eof: bool = True, **kw) -> list:
    """All events for ``data``; also checks that byte-at-a-time feeding gives the same events."""
    out = _feed(data, chunk, eof, **kw)
    assert _feed(data, 1, eof, **kw) == out
    return out


def _feed(data: bytes, chunk: int | None, eof: bool, **kw) -> list:
    p = CommandParser(**kw)
    events: list = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        p.receive_data(data[i : i + step])
        events += p.events()
    if eof:
        p.receive_data(b"")
        events += p.events()
    return events


def one(data: bytes, **kw) -> c.CommandBody:
    events = [e for e in feed(data, **kw) if not isinstance(e, (NeedContinuation, ConnectionClosed))]
    assert len(events) == 1 and isinstance(events[0], Command), events
    return events[0].command


def error(data: bytes, **kw) -> ParseError:
    events = [e for e in feed(data, **kw) if not isinstance(e, (NeedContinuation, ConnectionClosed))]
    assert len(events) == 1 and isinstance(events[0], ParseError), events
    return events[0]


# ------------------------------------------------------------------ simple commands


@pytest.mark.parametrize(
    "wire, cls",
    [
        (b"a1 CAPABILITY\r\n", c.Capability), (b"a1 noop\r\n", c.Noop), (b"a1 LOGOUT\r\n", c.Logout),
        (b"a1 STARTTLS\r\n", c.StartTLS), (b"a1 CHECK\r\n", c.Check), (b"a1 CLOSE\r\n", c.Close),
        (b"a1 UNSELECT\r\n", c.Unselect), (b"a1 EXPUNGE\r\n", c.Expunge), (b"a1 IDLE\r\n", c.Idle),
        (b"a1 Namespace\r\n", c.Namespace),
    ],
)  # fmt: skip
def test_no_argument_commands(wire, cls):
    assert feed(wire) == [Command("a1", cls()), ConnectionClosed()]


def test_bare_lf_and_blank_lines_are_tolerated():
    assert feed(b"\r\n\na NOOP\nb NOOP\r\n") == [Command("a", c.Noop()), Command("b", c.Noop()), ConnectionClosed()]


def test_many_blank_lines_are_skipped_at_once():
    """64 KiB of blank lines (padding before an injected STARTTLS) cost one skip, not 32,000 line reads."""
    p = CommandParser()
    p.receive_data(b"\r\n" * 40_000 + b"\r")
    assert p.next_event() is NEED_DATA and p.buffered == 1  # a lone CR may still become a blank line
    p.receive_data(b"\n\n\r\na NOOP\r\n")
    assert p.next_event() == Command("a", c.Noop())


def test_unknown_command_keeps_tag_and_next_command_parses():
    assert feed(b"x7 FROBNICATE 1\r\nx8 NOOP\r\n") == [
        ParseError("x7", "unknown command FROBNICATE"), Command("x8", c.Noop()), ConnectionClosed(),
    ]  # fmt: skip


def test_garbage_without_tag_is_untagged_error():
    assert error(b"+ hello\r\n").tag is None
    assert error(b"a1\r\n").tag == "a1"
    assert error(b"a1 NOOP extra\r\n").tag == "a1"


# ------------------------------------------------------------------ authentication, literals


def test_login_quoted_with_escapes():
    assert one(b'a LOGIN "fred@example.org" "p\\"w\\\\d"\r\n') == c.Login("fred@example.org", 'p"w\\d')


def test_login_synchronising_literals_ask_for_continuation():
    events = feed(b"a1 LOGIN {4}\r\nfred {6}\r\nsecret\r\n")
    assert events == [
        NeedContinuation("a1", "LOGIN", 4), NeedContinuation("a1", "LOGIN", 6),
        Command("a1", c.Login("fred", "secret")), ConnectionClosed(),
    ]  # fmt: skip


def test_literal_plus_needs_no_continuation():
    assert feed(b"a1 LOGIN {4+}\r\nfred {6+}\r\nsecret\r\n") == [
        Command("a1", c.Login("fred", "secret")), ConnectionClosed(),
    ]  # fmt: skip


def test_literal_is_not_reparsed_and_stops_at_need_data():
    p = CommandParser()
    p.receive_data(b"a1 LOGIN {4}\r\n")
    assert p.next_event() == NeedContinuation("a1", "LOGIN", 4)
    assert p.next_event() is NEED_DATA
    p.receive_data(b"fr")
    assert p.next_event() is NEED_DATA
    p.receive_data(b"ed pw\r\n")
    assert p.next_event() == Command("a1", c.Login("fred", "pw"))


def test_reject_literal_resynchronises_at_next_line():
    p = CommandParser()
    p.receive_data(b"a1 APPEND Drafts {999}\r\n")
    assert p.next_event() == NeedContinuation("a1", "APPEND", 999)
    p.reject_literal()  # server answered "a1 NO [TRYCREATE]" instead of "+"
    p.receive_data(b"a2 NOOP\r\n")
    assert p.next_event() == Command("a2", c.Noop())
    with pytest.raises(RuntimeError):
        p.reject_literal()


def test_bad_command_before_synchronising_literal_gets_no_continuation():
    assert feed(b"a1 FOO {5}\r\na2 NOOP\r\n") == [
        ParseError("a1", "unknown command FOO"), Command("a2", c.Noop()), ConnectionClosed(),
    ]  # fmt: skip
    assert feed(b"a1 NOOP {5}\r\na2 NOOP\r\n")[0] == ParseError("a1", "NOOP takes no literal")


def test_bad_command_with_nonsynchronising_literal_skips_the_literal():
    assert feed(b"a1 FOO {5+}\r\nb NOO {1+}\r\nx\r\na2 NOOP\r\n") == [
        ParseError("a1", "unknown command FOO"), Command("a2", c.Noop()), ConnectionClosed(),
    ]  # fmt: skip


def test_literal_not_at_end_of_line_is_an_error():
    assert "literal" in error(b"a1 LOGIN {4} x\r\n").message


def test_authenticate_with_sasl_ir_and_exchange():
    assert one(b"a AUTHENTICATE PLAIN AGZyZWQAc2VjcmV0\r\n") == c.Authenticate("PLAIN", b"\0fred\0secret")
    assert one(b"a AUTHENTICATE plain =\r\n") == c.Authenticate("PLAIN", b"")
    assert error(b"a AUTHENTICATE PLAIN AGZy=ZWQ\r\n").tag == "a"
    p = CommandParser()
    p.receive_data(b"a AUTHENTICATE LOGIN\r\nZnJlZA==\r\n*\r\nb NOOP\r\n")
    assert p.next_event() == Command("a", c.Authenticate("LOGIN"))
    p.expect_line()
    assert p.next_event() == ContinuationLine(b"ZnJlZA==")
    p.expect_line()
    assert p.next_event() == ContinuationLine(b"*")
    assert p.next_event() == Command("b", c.Noop())


def test_idle_done_pipelined_in_same_packet():
    p = CommandParser()
    p.receive_data(b"i1 IDLE\r\nDONE\r\ni2 NOOP\r\n")
    assert p.next_event() == Command("i1", c.Idle())
    p.expect_line()
    assert p.next_event() == ContinuationLine(b"DONE")
    assert p.next_event() == Command("i2", c.Noop())
    assert p.next_event() is NEED_DATA


def test_expect_line_mid_command_is_a_usage_error():
    p = CommandParser()
    p.receive_data(b"a LOGIN {3}\r\n")
    assert isinstance(p.next_event(), NeedContinuation)
    with pytest.raises(RuntimeError):
        p.expect_line()


# ------------------------------------------------------------------ mailboxes


def test_select_plain_condstore_and_inbox_case():
    assert one(b"a SELECT inbox\r\n") == c.Select("INBOX")
    assert one(b"a EXAMINE InBoX (CONDSTORE)\r\n") == c.Examine("INBOX", condstore=True)
    assert one(b'a SELECT "Sent Items"\r\n') == c.Select("Sent Items")


def test_select_qresync_rfc7162_example():
    wire = b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1,3,5 1,3,5)))\r\n"
    assert one(wire) == c.Select(
        "INBOX",
        qresync=c.QResync(67890007, 20050715194045000, S.parse("41,43:211,214:541"), (S.parse("1,3,5"),) * 2),
    )
    assert one(b"a SELECT INBOX (QRESYNC (1 2))\r\n") == c.Select("INBOX", qresync=c.QResync(1, 2))
    assert error(b"a SELECT INBOX (QRESYNC (1 2 1:*))\r\n").tag == "a"
    assert error(b"a SELECT INBOX (CONDSTORE CONDSTORE)\r\n").tag == "a"
    assert error(b"a SELECT INBOX ()\r\n").tag == "a"


def test_chinese_mailbox_names_modified_utf7():
    assert one(b"a SELECT &UXZO1mWHTvZZOQ-\r\n") == c.Select("其他文件夹")
    assert one(b'a CREATE "~peter/mail/&U,BTFw-/&ZeVnLIqe-"\r\n') == c.Create("~peter/mail/台北/日本語")
    assert one(b"a DELETE A&-B\r\n") == c.Delete("A&B")
    # Not modified UTF-7 (shifted ASCII is not canonical; raw 8-bit): well-formed syntax, an
    # unusable name that no folder has (NO at SELECT, nothing in LIST), never a parse error.
    for raw, octets in ((b"&AGE-", b"&AGE-"), (b'"\xe5\x85\xb6"', b"\xe5\x85\xb6")):
        name = one(b"a SELECT " + raw + b"\r\n").mailbox
        assert isinstance(name, UnusableName) and name.raw == octets and name.startswith("\0")


def test_utf8_mailbox_names_after_enable():
    assert one(b'a SELECT "\xe5\x85\xb6\xe4\xbb\x96"\r\n', utf8_names=True) == c.Select("其他")
    assert one(b"a SELECT A&B\r\n", utf8_names=True) == c.Select("A&B")
    assert error(b'a SELECT "\xff"\r\n', utf8_names=True).tag == "a"


def test_mailbox_management():
    assert one(b"a CREATE Sent (USE (\\sent))\r\n") == c.Create("Sent", ("\\Sent",))
    assert one(b"a CREATE Archive/2024\r\n") == c.Create("Archive/2024")
    assert one(b"a RENAME Old {3+}\r\nNew\r\n") == c.Rename("Old", "New")
    assert one(b"a SUBSCRIBE Lists\r\n") == c.Subscribe("Lists")
    assert one(b'a UNSUBSCRIBE "Lists"\r\n') == c.Unsubscribe("Lists")


def test_list_basic_forms():
    assert one(b'a LIST "" *\r\n') == c.List("", ("*",))
    assert one(b'a LIST "" %\r\n') == c.List("", ("%",))
    assert one(b'a list "" "INBOX.%"\r\n') == c.List("", ("INBOX.%",))
    assert one(b"a LSUB #news. comp.mail.*\r\n") == c.Lsub("#news.", "comp.mail.*")
    assert not one(b'a LIST "" *\r\n').extended


def test_list_extended_rfc5258_and_return_status():
    got = one(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Sent*") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n')
    assert got == c.List(
        "", ("INBOX", "Sent*"), ("SUBSCRIBED", "RECURSIVEMATCH"), ("CHILDREN",), ("MESSAGES", "UNSEEN"), True
    )
    assert one(b'a LIST () "" %\r\n').extended
    assert one(b'a LIST "" % RETURN (SPECIAL-USE)\r\n') == c.List("", ("%",), (), ("SPECIAL-USE",), None, True)
    assert error(b'a LIST (RECURSIVEMATCH) "" %\r\n').tag == "a"  # RFC 5258 §3.1
    assert error(b'a LIST (BOGUS) "" %\r\n').tag == "a"


def test_status():
    assert one(b"a STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)\r\n") == c.Status(
        "INBOX", ("MESSAGES", "UIDNEXT", "HIGHESTMODSEQ")
    )
    assert error(b"a STATUS INBOX (BOGUS)\r\n").tag == "a"
    assert error(b"a STATUS INBOX ()\r\n").tag == "a"


def test_append_forms():
    tz = timezone(timedelta(hours=-8))
    assert one(b'a APPEND Drafts (\\Seen \\draft) " 7-Feb-1994 21:52:25 -0800" {5}\r\nhello\r\n') == c.Append(
        "Drafts", b"hello", ("\\Seen", "\\Draft"), datetime(1994, 2, 7, 21, 52, 25, tzinfo=tz)
    )
    assert one(b"a APPEND INBOX {0+}\r\n\r\n") == c.Append("INBOX", b"")
    assert one(b"a APPEND INBOX () {2+}\r\n\r\n\r\n") == c.Append("INBOX", b"\r\n")
    assert one(b"a APPEND INBOX ~{3+}\r\na\0b\r\n") == c.Append("INBOX", b"a\0b", literal8=True)
    assert one(b"a APPEND INBOX UTF8 (~{2}\r\nhi)\r\n") == c.Append("INBOX", b"hi", literal8=True, utf8=True)
    assert error(b'a APPEND INBOX "not a literal"\r\n').tag == "a"
    assert error(b"a APPEND INBOX UTF8 ({2}\r\nhi)\r\n").tag == "a"


def test_append_literal_events():
    data = b"A003 APPEND saved-messages (\\Seen) {23}\r\nDate: Mon, 7 Feb 1994\r\n\r\n"
    assert feed(data) == [
        NeedContinuation("A003", "APPEND", 23),
        Command("A003", c.Append("saved-messages", b"Date: Mon, 7 Feb 1994\r\n", ("\\Seen",))),
        ConnectionClosed(),
    ]


# ------------------------------------------------------------------ SEARCH


@pytest.mark.parametrize(
    "text, key",
    [
        (b"ALL", c.SearchAll()), (b"ANSWERED", c.SearchFlag("\\Answered")), (b"DELETED", c.SearchFlag("\\Deleted")),
        (b"DRAFT", c.SearchFlag("\\Draft")), (b"FLAGGED", c.SearchFlag("\\Flagged")),
        (b"RECENT", c.SearchFlag("\\Recent")), (b"SEEN", c.SearchFlag("\\Seen")),
        (b"OLD", c.SearchFlag("\\Recent", False)), (b"UNANSWERED", c.SearchFlag("\\Answered", False)),
        (b"UNDELETED", c.SearchFlag("\\Deleted", False)), (b"UNDRAFT", c.SearchFlag("\\Draft", False)),
        (b"UNFLAGGED", c.SearchFlag("\\Flagged", False)), (b"UNSEEN", c.SearchFlag("\\Seen", False)),
        (b"NEW", c.SearchAnd((c.SearchFlag("\\Recent"), c.SearchFlag("\\Seen", False)))),
        (b"KEYWORD $Junk", c.SearchFlag("$Junk")), (b"UNKEYWORD $Junk", c.SearchFlag("$Junk", False)),
        (b"BEFORE 1-Feb-1994", c.SearchDate("internal", "before", date(1994, 2, 1))),
        (b'ON "01-feb-1994"', c.SearchDate("internal", "on", date(1994, 2, 1))),
        (b"SINCE 31-Dec-2023", c.SearchDate("internal", "since", date(2023, 12, 31))),
        (b"SENTBEFORE 1-Jan-2000", c.SearchDate("sent", "before", date(2000, 1, 1))),
        (b"SENTON 1-Jan-2000", c.SearchDate("sent", "on", date(2000, 1, 1))),
        (b"SENTSINCE 1-Jan-2000", c.SearchDate("sent", "since", date(2000, 1, 1))),
        (b"LARGER 1024", c.SearchSize("larger", 1024)), (b"SMALLER 10", c.SearchSize("smaller", 10)),
        (b"FROM smith", c.SearchHeader("from", "smith")), (b'TO "a b"', c.SearchHeader("to", "a b")),
        (b"CC x", c.SearchHeader("cc", "x")), (b"BCC x", c.SearchHeader("bcc", "x")),
        (b"SUBJECT {5+}\r\nhello", c.SearchHeader("subject", "hello")),
        (b'HEADER Message-ID "<a@b>"', c.SearchHeader("message-id", "<a@b>", by_name=True)),
        (b"BODY urgent", c.SearchText("body", "urgent")), (b"TEXT urgent", c.SearchText("text", "urgent")),
        (b"UID 1:*", c.SearchSeq(S(((1, None),)), uid=True)), (b"2,4:6", c.SearchSeq(S(((2, 2), (4, 6))))),
        (b"$", c.SearchSeq(S(saved=True))), (b"NOT SEEN", c.SearchNot(c.SearchFlag("\\Seen"))),
        (b"OR SEEN FLAGGED", c.SearchOr(c.SearchFlag("\\Seen"), c.SearchFlag("\\Flagged"))),
        (b"(SEEN)", c.SearchFlag("\\Seen")), (b"MODSEQ 620162338", c.SearchModSeq(620162338)),
        (b'MODSEQ "/flags/\\\\draft" all 620162338', c.SearchModSeq(620162338, "\\Draft", "all")),
    ],
)  # fmt: skip
def test_every_search_key(text, key):
    assert one(b"a SEARCH " + text + b"\r\n") == c.Search(key)


def test_nested_search_with_charset_and_literal():
    wire = (
        b"a UID SEARCH CHARSET UTF-8 OR (FROM x SUBJECT {6}\r\n\xe4\xbc\x9a\xe8\xae\xae) NOT (SEEN 1:5) UNDELETED\r\n"
    )
    assert one(wire) == c.Search(
        c.SearchAnd((
            c.SearchOr(
                c.SearchAnd((c.SearchHeader("from", "x"), c.SearchHeader("subject", "会议"))),
                c.SearchNot(c.SearchAnd((c.SearchFlag("\\Seen"), c.SearchSeq(S(((1, 5),)))))),
            ),
            c.SearchFlag("\\Deleted", False),
        )),
        charset="UTF-8",
        uid=True,
    )  # fmt: skip


def test_search_gb2312_charset_is_decoded():
    got = one(b"a SEARCH CHARSET GB2312 SUBJECT {4+}\r\n\xbb\xe1\xd2\xe9\r\n")
    assert got == c.Search(c.SearchHeader("subject", "会议"), charset="GB2312")


def test_unknown_charset_is_not_bad_but_badcharset():
    assert feed(b"a SEARCH CHARSET KOI8-U ALL\r\n")[0] == BadCharset("a", "KOI8-U")


def test_esearch_return_options():
    assert one(b"a SEARCH RETURN (MIN MAX COUNT) UNSEEN\r\n") == c.Search(
        c.SearchFlag("\\Seen", False), return_options=("MIN", "MAX", "COUNT")
    )
    assert one(b"a UID SEARCH RETURN () ALL\r\n") == c.Search(c.SearchAll(), uid=True, return_options=())
    assert one(b"a SEARCH RETURN (SAVE) CHARSET US-ASCII ALL\r\n").return_options == ("SAVE",)
    assert error(b"a SEARCH RETURN (BOGUS) ALL\r\n").tag == "a"


def test_search_nesting_is_bounded():
    assert "deep" in error(b"a SEARCH " + b"NOT " * 5000 + b"ALL\r\n").message
    assert "deep" in error(b"a SEARCH " + b"(" * 5000 + b"ALL" + b")" * 5000 + b"\r\n").message


def test_search_errors():
    assert error(b"a SEARCH BOGUS\r\n").tag == "a"
    assert error(b"a SEARCH SINCE 30-Feb-2020\r\n").tag == "a"
    assert error(b"a SEARCH\r\n").tag == "a"
    assert error(b"a SEARCH 0:4\r\n").tag == "a"


# ------------------------------------------------------------------ FETCH, STORE, COPY, MOVE


def test_fetch_macros_expand():
    assert one(b"a FETCH 1:* ALL\r\n").items == tuple(c.FetchAtt(n) for n in c.FETCH_MACROS["ALL"])
    assert one(b"a FETCH 1 fast\r\n").items == tuple(c.FetchAtt(n) for n in c.FETCH_MACROS["FAST"])
    assert one(b"a FETCH 1 FULL\r\n").items[-1] == c.FetchAtt("BODY")


def test_fetch_client_forms():
    hdr = c.Section((), "HEADER.FIELDS", ("DATE", "FROM"))
    assert one(b"a FETCH 1:2 BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.2048>\r\n") == c.Fetch(
        S(((1, 2),)), (c.FetchBody(hdr, (0, 2048), peek=True),)
    )
    assert one(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n") == c.Fetch(
        S(((1, None),)), (c.FetchAtt("FLAGS"),), uid=True, changed_since=12345
    )
    # Thunderbird
    tb = one(b"5 UID fetch 1:* (FLAGS)\r\n")
    assert tb.uid and tb.items == (c.FetchAtt("FLAGS"),)
    # Outlook
    assert one(b"a UID FETCH 3,5:9 (UID FLAGS RFC822.SIZE BODY.PEEK[] INTERNALDATE)\r\n").items == (
        c.FetchAtt("UID"), c.FetchAtt("FLAGS"), c.FetchAtt("RFC822.SIZE"), c.FetchBody(peek=True),
        c.FetchAtt("INTERNALDATE"),
    )  # fmt: skip
    # iOS Mail
    ios = one(
        b"4 UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS.NOT (Received X-Spam)] BODYSTRUCTURE)"
        b" (CHANGEDSINCE 8 VANISHED)\r\n"
    )
    assert ios.items[3] == c.FetchBody(c.Section((), "HEADER.FIELDS.NOT", ("Received", "X-Spam")), peek=True)
    assert ios.vanished and ios.changed_since == 8


def test_thunderbird_and_outlook_transcripts():
    tb = one(
        b"8 UID fetch 4:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID "
        b"Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n"
    )
    assert tb.uid and tb.sequence_set == S(((4, None),)) and tb.items[3].section.fields[-1] == "Reply-To"
    assert one(b'3 select "INBOX"\r\n') == c.Select("INBOX")
    assert one(b'4 LIST (SUBSCRIBED) "" "*"\r\n') == c.List("", ("*",), ("SUBSCRIBED",))
    assert one(b"9 UID store 4 +FLAGS (\\Seen)\r\n") == c.Store(S(((4, 4),)), "add", ("\\Seen",), uid=True)
    outlook = one(b"A5 UID FETCH 1:24 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])\r\n")
    assert outlook.items[-1] == c.FetchBody(c.Section((), "HEADER"), peek=True)
    assert one(b'A1 ID ("name" "Microsoft Outlook" "version" "16.0")\r\n').params[0] == ("name", "Microsoft Outlook")
    assert one(b"7 UID SEARCH 1:* NOT DELETED\r\n") == c.Search(
        c.SearchAnd((c.SearchSeq(S(((1, None),))), c.SearchNot(c.SearchFlag("\\Deleted")))), uid=True
    )


def test_fetch_sections_and_binary():
    items = one(
        b"a FETCH 1 (BODY[] BODY[1.2] BODY[1.2.MIME] BODY[1.HEADER] BODY[TEXT]<10.20> BINARY.PEEK[1]<0.100>"
        b" BINARY.SIZE[2] BINARY[] MODSEQ EMAILID RFC822 RFC822.HEADER RFC822.TEXT ENVELOPE)\r\n"
    ).items
    assert items[:8] == (
        c.FetchBody(), c.FetchBody(c.Section((1, 2))), c.FetchBody(c.Section((1, 2), "MIME")),
        c.FetchBody(c.Section((1,), "HEADER")), c.FetchBody(c.Section((), "TEXT"), (10, 20)),
        c.FetchBody(c.Section((1,)), (0, 100), peek=True, binary=True), c.FetchBinarySize((2,)),
        c.FetchBody(binary=True),
    )  # fmt: skip
    assert items[8:] == tuple(
        c.FetchAtt(n) for n in ("MODSEQ", "EMAILID", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "ENVELOPE")
    )


@pytest.mark.parametrize(
    "bad",
    [
        b"a FETCH 1 (FLAGS) (VANISHED)", b"a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        b"a FETCH 1 BODY[MIME]", b"a FETCH 1 BODY[0]", b"a FETCH 1 BODY[1]<5.0>", b"a FETCH 1 BOGUS",
        b"a FETCH 1 ()", b"a FETCH 1 (ALL)", b"a FETCH 1 BODY.PEEK", b"a FETCH 1 BODY[HEADER.FIELDS ()]",
        b"a FETCH 1 (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 2)", b"a FETCH 0 FLAGS", b"a FETCH 4294967296 FLAGS",
    ],
)  # fmt: skip
def test_fetch_errors(bad):
    assert error(bad + b"\r\n").tag == "a"


def test_store_forms():
    assert one(b"a STORE 2:4 +FLAGS (\\Deleted)\r\n") == c.Store(S(((2, 4),)), "add", ("\\Deleted",))
    assert one(b"a STORE 1 -flags.silent \\seen $Junk\r\n") == c.Store(
        S(((1, 1),)), "remove", ("\\Seen", "$Junk"), silent=True
    )
    assert one(b"a UID STORE 5:* (UNCHANGEDSINCE 320162338) FLAGS.SILENT ()\r\n") == c.Store(
        S(((5, None),)), "replace", (), silent=True, uid=True, unchanged_since=320162338
    )
    assert error(b"a STORE 1 +FLAGS.LOUD (\\Seen)\r\n").tag == "a"


def test_copy_move_uid_expunge():
    assert one(b"a COPY 2:4 MEETING\r\n") == c.Copy(S(((2, 4),)), "MEETING")
    assert one(b"a UID MOVE 42 &UXZO1mWHTvZZOQ-\r\n") == c.Move(S(((42, 42),)), "其他文件夹", uid=True)
    assert one(b"a UID EXPUNGE 3000:3002\r\n") == c.UidExpunge(S(((3000, 3002),)))
    assert one(b"a UID COPY $ Trash\r\n") == c.Copy(S(saved=True), "Trash", uid=True)
    assert error(b"a UID FOO 1\r\n").message == "unknown command UID FOO"


# ------------------------------------------------------------------ ID, ENABLE, QUOTA, ACL


def test_id_enable_namespace():
    assert one(b"a ID NIL\r\n") == c.Id(None)
    assert one(b'a ID ("name" "iPhone Mail" "version" "16A366" "os" NIL)\r\n') == c.Id(
        (("name", "iPhone Mail"), ("version", "16A366"), ("os", None))
    )
    assert one(b"a ID ()\r\n") == c.Id(())
    assert one(b"a ENABLE condstore UTF8=ACCEPT\r\n") == c.Enable(("CONDSTORE", "UTF8=ACCEPT"))
    assert error(b"a ENABLE\r\n").tag == "a"


def test_quota_commands():
    assert one(b'a GETQUOTA ""\r\n') == c.GetQuota("")
    assert one(b"a GETQUOTAROOT INBOX\r\n") == c.GetQuotaRoot("INBOX")
    assert one(b'a SETQUOTA "" (STORAGE 512 MESSAGE 1000)\r\n') == c.SetQuota("", (("STORAGE", 512), ("MESSAGE", 1000)))
    assert one(b"a SETQUOTA x ()\r\n") == c.SetQuota("x", ())


def test_acl_commands():
    assert one(b"a SETACL INBOX fred +lrs\r\n") == c.SetAcl("INBOX", "fred", "lrs", "add")
    assert one(b'a SETACL INBOX "fred smith" -w\r\n') == c.SetAcl("INBOX", "fred smith", "w", "remove")
    assert one(b"a SETACL INBOX fred lrswipkxtea\r\n") == c.SetAcl("INBOX", "fred", "lrswipkxtea")
    assert one(b"a DELETEACL INBOX fred\r\n") == c.DeleteAcl("INBOX", "fred")
    assert one(b"a GETACL INBOX\r\n") == c.GetAcl("INBOX")
    assert one(b"a LISTRIGHTS ~/Mail/saved smith\r\n") == c.ListRights("~/Mail/saved", "smith")
    assert one(b"a MYRIGHTS INBOX\r\n") == c.MyRights("INBOX")
    assert error(b"a SETACL INBOX fred +LR\r\n").tag == "a"


# ------------------------------------------------------------------ limits and end of stream


def test_line_too_long_is_skipped_and_next_command_parses():
    events = feed(b"t1 SEARCH " + b"X" * 100 + b"\r\nt2 NOOP\r\n", max_line=40)
    assert events == [
        LimitExceeded("t1", None, "line", None, 40), Command("t2", c.Noop()), ConnectionClosed(),
    ]  # fmt: skip


def test_too_long_line_announcing_literal_plus_skips_it():
    events = feed(b"t1 LOGIN " + b"x" * 50 + b" {5+}\r\nhello\r\nt2 NOOP\r\n", max_line=40)
    assert events == [LimitExceeded("t1", None, "line", None, 40), Command("t2", c.Noop()), ConnectionClosed()]


def test_literal_too_big_synchronising():
    events = feed(b"a APPEND INBOX {1000}\r\nb NOOP\r\n", max_literal=100)
    assert events == [
        LimitExceeded("a", "APPEND", "literal", 1000, 100, synchronizing=True),
        Command("b", c.Noop()),
        ConnectionClosed(),
    ]


def test_literal_too_big_nonsynchronising_is_skipped_unbuffered():
    p = CommandParser(max_literal=100)
    p.receive_data(b"a APPEND INBOX {100000+}\r\n")
    assert p.next_event() == LimitExceeded("a", "APPEND", "literal", 100000, 100, synchronizing=False)
    for _ in range(100):
        p.receive_data(b"z" * 1000)
        assert p.next_event() is NEED_DATA and p.buffered == 0
    p.receive_data(b"\r\nb NOOP\r\n")
    assert p.next_event() == Command("b", c.Noop())


def test_literal_limit_counts_all_literals_of_a_command():
    events = feed(b"a LOGIN {60+}\r\n" + b"u" * 60 + b" {60+}\r\n" + b"p" * 60 + b"\r\nb NOOP\r\n", max_literal=100)
    assert events[0] == LimitExceeded("a", "LOGIN", "literal", 60, 100)
    assert events[1] == Command("b", c.Noop())


def test_end_of_stream():
    assert feed(b"a NOOP\r\n") == [Command("a", c.Noop()), ConnectionClosed(incomplete=False)]
    assert feed(b"a NO") == [ConnectionClosed(incomplete=True)]
    assert feed(b"a LOGIN {5}\r\nab") == [NeedContinuation("a", "LOGIN", 5), ConnectionClosed(incomplete=True)]
    p = CommandParser()
    p.receive_data(b"")
    assert p.next_event() == ConnectionClosed() == p.next_event()
    with pytest.raises(RuntimeError):
        p.receive_data(b"x")


@pytest.mark.timeout(60)  # liveness only: milliseconds when linear (benchmarks/latency_bench.py, render)
def test_large_literal_in_small_chunks():
    body = b"x" * (4 * 1024 * 1024)
    p = CommandParser()
    p.receive_data(b"a APPEND INBOX {%d+}\r\n" % len(body))
    for i in range(0, len(body), 4096):
        p.receive_data(body[i : i + 4096])
        assert p.next_event() is NEED_DATA
    p.receive_data(b"\r\n")
    event = p.next_event()
    assert event.command.message == body


# ------------------------------------------------------------------ sequence sets


def test_sequence_set_api():
    s = S.parse("5:2,9,12:*")
    assert s.ranges == ((5, 2), (9, 9), (12, None)) and str(s) == "5:2,9,12:*"
    assert s.normalised(14) == ((2, 5), (9, 9), (12, 14))
    assert list(s.iter(13)) == [2, 3, 4, 5, 9, 12, 13]
    assert s.count(14) == 8 and s.contains(13, 14) and not s.contains(10, 14)
    assert S.parse("559:*").contains(500, 500)  # RFC 3501 §6.4.8: includes the last UID
    assert S.parse("*").normalised(0) == ()
    assert S.parse("1:4294967295").count(4294967295) == 4294967295  # never materialised
    member = S.parse("1:3,7,100:200").matcher(1000)
    assert [n for n in (0, 1, 3, 4, 7, 99, 150, 201) if member(n)] == [1, 3, 7, 150]
    assert S.from_ints([7, 1, 2, 3, 9, 8]) == S(((1, 3), (7, 9)))
    assert S.parse("$").resolve(S.parse("4")) == S.parse("4")
    assert S.parse("3,1:*").max_explicit() == 3
    with pytest.raises(ValueError):
        S.parse("$").normalised(5)
    for bad in ("", "0", "1:", "1,,2", "4294967296", "1:0"):
        with pytest.raises(ValueError):
            S.parse(bad)


def test_command_to_chunks_splits_at_synchronising_literals():
    cmd = Command("a1", c.Login("fred smith", "pa\r\nss"))
    assert command_to_chunks(cmd) == [b'a1 LOGIN "fred smith" {6}\r\n', b"pa\r\nss\r\n"]
    assert command_to_bytes(cmd, literal_plus=True) == b'a1 LOGIN "fred smith" {6+}\r\npa\r\nss\r\n'
    assert command_to_bytes(Command("t", c.Fetch(S(((1, None),)), (c.FetchAtt("FLAGS"),), True, 12345))) == (
        b"t UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n"
    )
    assert command_to_bytes(Command("t", c.Select("其他文件夹"))) == b"t SELECT &UXZO1mWHTvZZOQ-\r\n"
