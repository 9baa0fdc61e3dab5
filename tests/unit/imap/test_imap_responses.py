"""Exact wire bytes of IMAP server responses, string encoding choices, and FETCH serialisation speed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailserver.imap import responses as r
from mailserver.imap.commands import FetchBinarySize, FetchBody, Section
from mailserver.imap.commands import SequenceSet as S
from mailserver.imap.responses import Code, Raw


@pytest.mark.parametrize(
    "value, wire",
    [
        (b"INBOX", b"INBOX"), (b"a]b", b"a]b"), (b"", b'""'), (b"NIL", b'"NIL"'), (b"nil", b'"nil"'),
        (b"two words", b'"two words"'), (b'q"b\\s', b'"q\\"b\\\\s"'), (b"a%b", b'"a%b"'), (b"(x)", b'"(x)"'),
        (b"line\r\nbreak", b"{11}\r\nline\r\nbreak"), (b"nul\0", b"{4}\r\nnul\0"),
        ("中".encode(), b"{3}\r\n\xe4\xb8\xad"),
        (b"x" * 2000, b"x" * 2000), (b"x " * 600, b"{1200}\r\n" + b"x " * 600), ("fred", b"fred"),
    ],
)  # fmt: skip
def test_astring_choices(value, wire):
    assert r.astring(value) == wire


def test_string_nstring_literal_helpers():
    assert r.string(b"atom") == b'"atom"'
    assert r.string("中", utf8=True) == b'"\xe4\xb8\xad"'
    assert r.nstring(None) == b"NIL"
    assert r.nstring(b"") == b'""'
    assert r.literal(b"abc") == b"{3}\r\nabc"
    assert r.literal8(b"a\0") == b"~{2}\r\na\0"
    assert r.quoted(b'a"b') == b'"a\\"b"'


def test_render_nested_values():
    value = [None, 3, b"x y", "中", Raw(b"\\Seen"), [b"a", [Raw(b"NIL")]], S.parse("1:3")]
    assert r.render(value) == b'(NIL 3 "x y" {3}\r\n\xe4\xb8\xad \\Seen ("a" (NIL)) 1:3)'
    with pytest.raises(TypeError):
        r.render(object())


def test_mailbox_names_and_date_time():
    assert r.mailbox_name("inbox") == b"INBOX"
    assert r.mailbox_name("其他文件夹") == b"&UXZO1mWHTvZZOQ-"
    assert r.mailbox_name("Sent Items") == b'"Sent Items"'
    assert r.mailbox_name("其他", utf8=True) == b'"\xe5\x85\xb6\xe4\xbb\x96"'
    tz = timezone(-timedelta(hours=7))
    assert r.date_time(datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz)) == b'"17-Jul-1996 02:44:25 -0700"'
    assert r.date_time(datetime(2024, 2, 1, 9, 0, 0, tzinfo=timezone(timedelta(hours=8)))) == (
        b'" 1-Feb-2024 09:00:00 +0800"'
    )


@pytest.mark.parametrize(
    "code, wire",
    [
        (Code.uidvalidity(3857529045), b"[UIDVALIDITY 3857529045]"), (Code.uidnext(4392), b"[UIDNEXT 4392]"),
        (Code.unseen(12), b"[UNSEEN 12]"), (Code.highestmodseq(715194045007), b"[HIGHESTMODSEQ 715194045007]"),
        (Code.permanentflags(["\\Deleted", "\\Seen", "\\*"]), b"[PERMANENTFLAGS (\\Deleted \\Seen \\*)]"),
        (Code.appenduid(38505, 3955), b"[APPENDUID 38505 3955]"),
        (Code.copyuid(38505, S.parse("304,319:320"), S.parse("3956:3958")), b"[COPYUID 38505 304,319:320 3956:3958]"),
        (Code.capability(["IMAP4rev1", "IDLE"]), b"[CAPABILITY IMAP4rev1 IDLE]"),
        (Code.modified(S.parse("7,9")), b"[MODIFIED 7,9]"),
        (Code.badcharset(["UTF-8", "US-ASCII"]), b"[BADCHARSET (UTF-8 US-ASCII)]"),
        (r.READ_WRITE, b"[READ-WRITE]"), (r.READ_ONLY, b"[READ-ONLY]"), (r.TRYCREATE, b"[TRYCREATE]"),
        (r.ALERT, b"[ALERT]"), (r.OVERQUOTA, b"[OVERQUOTA]"), (r.LIMIT, b"[LIMIT]"), (r.NOPERM, b"[NOPERM]"),
        (r.NONEXISTENT, b"[NONEXISTENT]"), (r.ALREADYEXISTS, b"[ALREADYEXISTS]"), (r.CLOSED, b"[CLOSED]"),
        (r.NOMODSEQ, b"[NOMODSEQ]"), (r.AUTHENTICATIONFAILED, b"[AUTHENTICATIONFAILED]"),
        (r.UNAVAILABLE, b"[UNAVAILABLE]"), (r.CANNOT, b"[CANNOT]"), (r.SERVERBUG, b"[SERVERBUG]"),
        (r.TOOBIG, b"[TOOBIG]"),
    ],
)  # fmt: skip
def test_response_codes(code, wire):
    assert bytes(code) == wire


def test_status_responses():
    assert bytes(r.Tagged("a1", "OK", "SELECT completed", r.READ_WRITE)) == b"a1 OK [READ-WRITE] SELECT completed\r\n"
    assert bytes(r.Tagged("a2", "NO", "no such mailbox", r.TRYCREATE)) == b"a2 NO [TRYCREATE] no such mailbox\r\n"
    assert bytes(r.Tagged("a3", "BAD", "")) == b"a3 BAD done\r\n"
    assert bytes(r.Untagged("OK", "Still here", Code.uidvalidity(1))) == b"* OK [UIDVALIDITY 1] Still here\r\n"
    assert bytes(r.Untagged("PREAUTH", "hi")) == b"* PREAUTH hi\r\n"
    assert bytes(r.bye()) == b"* BYE Logging out\r\n"
    assert bytes(r.Continuation()) == b"+ Ready\r\n"
    assert bytes(r.Continuation("idling")) == b"+ idling\r\n"
    assert bytes(r.SaslChallenge(b"")) == b"+ \r\n"
    assert bytes(r.SaslChallenge(b"Username:")) == b"+ VXNlcm5hbWU6\r\n"


def test_response_text_cannot_inject_lines():
    assert bytes(r.Tagged("a", "NO", "bad\r\n* OK [ALERT] pwned")) == b"a NO bad * OK [ALERT] pwned\r\n"


def test_untagged_mailbox_data():
    assert bytes(r.Capabilities(("IMAP4rev1", "LITERAL+", "IDLE"))) == b"* CAPABILITY IMAP4rev1 LITERAL+ IDLE\r\n"
    assert bytes(r.Exists(23)) == b"* 23 EXISTS\r\n"
    assert bytes(r.Recent(0)) == b"* 0 RECENT\r\n"
    assert bytes(r.Expunged(3)) == b"* 3 EXPUNGE\r\n"
    assert bytes(r.Vanished(S.parse("41,43:116"), earlier=True)) == b"* VANISHED (EARLIER) 41,43:116\r\n"
    assert bytes(r.Vanished(S.parse("405"))) == b"* VANISHED 405\r\n"
    flags = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
    assert bytes(r.Flags(flags)) == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    assert bytes(r.Flags(())) == b"* FLAGS ()\r\n"


def test_list_lsub_status():
    assert bytes(r.ListItem(("\\HasNoChildren",), "/", "inbox")) == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    assert bytes(r.ListItem(("\\Noselect",), None, "")) == b'* LIST (\\Noselect) NIL ""\r\n'
    assert bytes(r.ListItem(("\\Sent",), "/", "已发送")) == b'* LIST (\\Sent) "/" &XfJT0ZAB-\r\n'
    assert (
        bytes(r.ListItem((), "/", "已发送", utf8=True)) == b'* LIST () "/" "\xe5\xb7\xb2\xe5\x8f\x91\xe9\x80\x81"\r\n'
    )
    assert bytes(r.ListItem((), "\\", "a b", kind="LSUB")) == b'* LSUB () "\\\\" "a b"\r\n'
    ext = r.ListItem(("\\Subscribed",), "/", "Foo", extended=(("CHILDINFO", ("SUBSCRIBED",)),))
    assert bytes(ext) == b'* LIST (\\Subscribed) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    status = r.StatusData("blurdybloop", (("MESSAGES", 231), ("UIDNEXT", 44292), ("HIGHESTMODSEQ", 7011231777)))
    assert bytes(status) == b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 HIGHESTMODSEQ 7011231777)\r\n"


def test_search_and_esearch():
    assert bytes(r.SearchData([2, 84, 882])) == b"* SEARCH 2 84 882\r\n"
    assert bytes(r.SearchData([])) == b"* SEARCH\r\n"
    assert bytes(r.SearchData([2, 5], modseq=917162500)) == b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    assert bytes(r.ESearchData("A282", min=2, count=3)) == b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    assert bytes(r.ESearchData("A283", uid=True, all=S.parse("2,10:11"))) == (
        b'* ESEARCH (TAG "A283") UID ALL 2,10:11\r\n'
    )
    assert bytes(r.ESearchData("A284", count=0, all=S())) == b'* ESEARCH (TAG "A284") COUNT 0\r\n'
    assert bytes(r.ESearchData(None, max=9, modseq=4)) == b"* ESEARCH MAX 9 MODSEQ 4\r\n"


def test_fetch_data_with_prerendered_items():
    envelope = Raw(b'("date" "subj" NIL NIL NIL NIL NIL NIL NIL "<id@x>")')
    body = b"Subject: hi\r\n\r\nbody\r\n"
    resp = r.FetchData(
        12,
        [
            (b"UID", b"4827313"),
            (b"FLAGS", r.flag_list(["\\Seen", "$Forwarded"])),
            (b"INTERNALDATE", r.date_time(datetime(1996, 7, 17, 2, 44, 25, tzinfo=UTC))),
            (b"RFC822.SIZE", b"44827"),
            (b"MODSEQ", b"(624140003)"),
            (b"ENVELOPE", envelope),
            (FetchBody(Section(), (0, 100), peek=True).response_name(), r.literal_parts(body)),
        ],
    )
    assert bytes(resp) == (
        b'* 12 FETCH (UID 4827313 FLAGS (\\Seen $Forwarded) INTERNALDATE "17-Jul-1996 02:44:25 +0000" '
        b"RFC822.SIZE 44827 MODSEQ (624140003) " + b"ENVELOPE " + envelope + b" BODY[]<0> {21}\r\n" + body + b")\r\n"
    )
    assert b"".join(resp.chunks()) == bytes(resp)
    assert any(chunk is body for chunk in resp.chunks())  # passed through, not copied into a bigger buffer
    assert bytes(r.FetchData(3, [(b"BODY[]", r.literal(body))])) == b"* 3 FETCH (BODY[] {21}\r\n" + body + b")\r\n"
    assert bytes(r.FetchData(1, [])) == b"* 1 FETCH ()\r\n"


def test_fetch_response_names():
    hdr = Section((), "HEADER.FIELDS", ("DATE", "FROM", "X Odd"))
    assert FetchBody(hdr, (0, 2048), peek=True).response_name() == b'BODY[HEADER.FIELDS (DATE FROM "X Odd")]<0>'
    assert FetchBody(Section((1, 2), "MIME")).response_name() == b"BODY[1.2.MIME]"
    assert FetchBody(Section((3,)), binary=True, peek=True).response_name() == b"BINARY[3]"
    assert FetchBinarySize((1, 1)).response_name() == b"BINARY.SIZE[1.1]"


def test_other_untagged_data():
    assert bytes(r.Enabled(("CONDSTORE",))) == b"* ENABLED CONDSTORE\r\n"
    assert bytes(r.Enabled()) == b"* ENABLED\r\n"
    assert bytes(r.IdData(None)) == b"* ID NIL\r\n"
    assert bytes(r.IdData((("name", "Postroom"), ("support-url", None)))) == (
        b'* ID ("name" "Postroom" "support-url" NIL)\r\n'
    )
    assert bytes(r.NamespaceData()) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    ns = r.NamespaceData((("", "/"),), (("~", "/"),), (("#shared/", "/"), ("公共/", "/")))
    assert bytes(ns) == b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("&UWxRcQ-/" "/"))\r\n'
    assert bytes(r.QuotaData("", (("STORAGE", 10, 512),))) == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert bytes(r.QuotaRootData("INBOX", ("",))) == b'* QUOTAROOT INBOX ""\r\n'
    assert bytes(r.QuotaRootData("comp.mail.mime", ())) == b"* QUOTAROOT comp.mail.mime\r\n"
    assert bytes(r.AclData("INBOX", (("Fred", "rwipsldexta"), ("a b", "lr")))) == (
        b'* ACL INBOX Fred rwipsldexta "a b" lr\r\n'
    )
    assert bytes(r.ListRightsData("~/Mail/saved", "smith", "la", ("r", "swicdkxte"))) == (
        b"* LISTRIGHTS ~/Mail/saved smith la r swicdkxte\r\n"
    )
    assert bytes(r.ListRightsData("INBOX", "x", "")) == b'* LISTRIGHTS INBOX x ""\r\n'
    assert bytes(r.MyRightsData("INBOX", "rwiptsldaex")) == b"* MYRIGHTS INBOX rwiptsldaex\r\n"


def test_ten_thousand_fetch_responses_serialise():  # how fast: benchmarks/latency_bench.py (render)
    flags = r.flag_list(["\\Seen", "\\Answered", "$Label1"])
    envelope = Raw(b'("Mon, 7 Feb 1994 21:52:25 -0800" "Hello" (("A" NIL "a" "x.org")) NIL NIL NIL NIL NIL NIL "<i>")')
    date = r.date_time(datetime(2024, 1, 1, tzinfo=UTC))
    out = b"".join(
        bytes(r.FetchData(n, [(b"UID", b"%d" % (n + 1000)), (b"FLAGS", flags), (b"INTERNALDATE", date),
                              (b"RFC822.SIZE", b"%d" % (n * 7)), (b"ENVELOPE", envelope)]))
        for n in range(1, 10_001)
    )  # fmt: skip
    bulk = r.fetch_lines((n, [(b"UID", b"%d" % n), (b"FLAGS", flags)]) for n in range(1, 10_001))
    assert out.count(b"\r\n") == 10_000 and bulk.count(b" FETCH (UID ") == 10_000
    assert bulk.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Answered $Label1))\r\n")
