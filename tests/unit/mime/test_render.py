"""Exact ENVELOPE / BODY / BODYSTRUCTURE bytes, against RFC 3501 examples and Dovecot's own test vector."""

from __future__ import annotations

import pytest

from mailboxes.mime import parse_message
from mailserver.imap.render import (
    bodystructure_bytes, envelope_bytes, imap_string, imap_string_for_humans,
)

# Dovecot's src/lib-imap/test-imap-bodystructure.c message and the BODYSTRUCTURE / BODY it
# expects, with LF turned into CRLF: Dovecot counts sizes as if lines ended in CRLF, so with
# CRLF input our raw octet counts must give the very same numbers (7, 412, 20, 21 ...).
DOVECOT_MESSAGE = (
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n"
    "\n"
    "Root MIME prologue\n"
    "\n"
    "--foo bar\n"
    "Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n"
    "Content-ID: <foo@example.com>\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    "Content-Disposition: inline; foo=bar\n"
    "Content-Description: hellodescription\n"
    "Content-Language: en, fi, se\n"
    "Content-Location: http://example.com/test.txt\n"
    "\n"
    "hello\n"
    "\n"
    "--foo bar\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: sub@domain.org\n"
    "To: sub-to1@domain.org, sub-to2@domain.org\n"
    "Date: Sun, 12 Aug 2012 12:34:56 +0300\n"
    "Subject: submsg\n"
    "Content-Type: multipart/alternative; boundary=\"sub1\"\n"
    "\n"
    "Sub MIME prologue\n"
    "--sub1\n"
    "Content-Type: text/html\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "<p>Hello world</p>\n"
    "\n"
    "--sub1\n"
    "Content-Type: text/plain\n"
    "Content-Transfer-Encoding: ?invalid\n"
    "\n"
    "Hello another world\n"
    "\n"
    "--sub1--\n"
    "Sub MIME epilogue\n"
    "\n"
    "--foo bar--\n"
    "Root MIME epilogue\n"
).replace("\n", "\r\n").encode()

DOVECOT_SUB_ENVELOPE = (
    b'("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) '
    b'((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) '
    b'((NIL NIL "sub-to1" "domain.org")(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL)'
)

DOVECOT_BODYSTRUCTURE = (
    b'(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") "<foo@example.com>" '
    b'"hellodescription" "7bit" 7 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" ("foo" "bar")) '
    b'("en" "fi" "se") "http://example.com/test.txt")'
    b'("message" "rfc822" NIL NIL NIL "7bit" 412 ' + DOVECOT_SUB_ENVELOPE + b' '
    b'(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1 NIL NIL NIL NIL)'
    b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL) '
    b'"alternative" ("boundary" "sub1") NIL NIL NIL) 21 NIL NIL NIL NIL) '
    b'"mixed" ("boundary" "foo bar") NIL NIL NIL)'
)

DOVECOT_BODY = (
    b'(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") "<foo@example.com>" '
    b'"hellodescription" "7bit" 7 1)'
    b'("message" "rfc822" NIL NIL NIL "7bit" 412 ' + DOVECOT_SUB_ENVELOPE + b' '
    b'(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1)'
    b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1) "alternative") 21) "mixed")'
)


def test_dovecot_vector_bodystructure_and_body():
    m = parse_message(DOVECOT_MESSAGE)
    assert bodystructure_bytes(m.body) == DOVECOT_BODYSTRUCTURE
    assert bodystructure_bytes(m.body, extended=False) == DOVECOT_BODY


# RFC 3501 §8 sample FETCH response. The RFC prints it over several lines; on the wire the
# line breaks are single spaces, except between the two cc addresses, where the grammar
# ("(" 1*address ")") has no separator at all. Types, parameter names and the encoding come
# out lowercase (IMAP matches them case-insensitively, and Dovecot writes them so); the
# charset value keeps the header's own case.
RFC3501_MESSAGE = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    # 3028 octets in 92 lines: 88 lines of 31 + 4 of 29 characters, each ending in CRLF
    + b"".join(b"x" * 31 + b"\r\n" for _ in range(88)) + b"".join(b"y" * 29 + b"\r\n" for _ in range(4))
)


def test_rfc3501_sample_envelope_and_body():
    m = parse_message(RFC3501_MESSAGE)
    assert envelope_bytes(m.envelope) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")')
    assert bodystructure_bytes(m.body, extended=False) == \
        b'("text" "plain" ("charset" "US-ASCII") NIL NIL "7bit" 3028 92)'


# A Foxmail-style message small enough to count by hand:
#   张三 in GB2312 is D5C5 C8FD -> "1cXI/Q==";  中文 is D6D0 CEC4 -> "1tDOxA==";
#   中文.doc is D6D0 CEC4 2E64 6F63 -> "1tDOxC5kb2M=".
GBK_MESSAGE = (
    b"From: =?GB2312?B?1cXI/Q==?= <zs@example.cn>\r\n"
    b"Subject: =?GB2312?B?1tDOxA==?=\r\n"
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n"
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain; charset=GBK\r\n"
    b"\r\n"
    b"\xd6\xd0\xce\xc4\r\n"        # body: these 6 octets, 1 line (the next CRLF is the delimiter's)
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: application/msword; name=\"=?GB2312?B?1tDOxC5kb2M=?=\"\r\n"
    b"Content-Disposition: attachment;\r\n"
    b" filename*0*=GBK''%D6%D0;\r\n"
    b" filename*1*=%CE%C4.doc\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAAA\r\n"                    # body: 4 octets
    b"--b--\r\n"
)


def test_gbk_attachment_parameters_go_out_in_header_form():
    m = parse_message(GBK_MESSAGE)
    # RFC 2047 name left encoded, RFC 2231 continuations merged but not decoded (Dovecot's form)
    assert bodystructure_bytes(m.body) == (
        b'(("text" "plain" ("charset" "GBK") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)'
        b'("application" "msword" ("name" "=?GB2312?B?1tDOxC5kb2M=?=") NIL NIL "base64" 4 '
        b'NIL ("attachment" ("filename*" "GBK\'\'%D6%D0%CE%C4.doc")) NIL NIL) '
        b'"mixed" ("boundary" "b") NIL NIL NIL)')
    assert bodystructure_bytes(m.body, extended=False) == (
        b'(("text" "plain" ("charset" "GBK") NIL NIL "7bit" 6 1)'
        b'("application" "msword" ("name" "=?GB2312?B?1tDOxC5kb2M=?=") NIL NIL "base64" 4) "mixed")')
    assert envelope_bytes(m.envelope) == (
        b'(NIL "=?GB2312?B?1tDOxA==?=" (("=?GB2312?B?1cXI/Q==?=" NIL "zs" "example.cn")) '
        b'(("=?GB2312?B?1cXI/Q==?=" NIL "zs" "example.cn")) '
        b'(("=?GB2312?B?1cXI/Q==?=" NIL "zs" "example.cn")) NIL NIL NIL NIL NIL)')


def test_raw_8bit_values_become_literals_with_the_original_bytes():
    m = parse_message(b"Subject: \xb7\xa2\xc6\xb1\r\n"           # 发票 in GBK, unencoded
                      b"Content-Type: application/pdf; name=\"\xd6\xd0\xce\xc4.pdf\"\r\n\r\n%PDF")
    assert bodystructure_bytes(m.body) == (
        b'("application" "pdf" ("name" {8}\r\n\xd6\xd0\xce\xc4.pdf) NIL NIL "7bit" 4 NIL NIL NIL NIL)')
    assert envelope_bytes(m.envelope) == b"(NIL {4}\r\n\xb7\xa2\xc6\xb1 NIL NIL NIL NIL NIL NIL NIL NIL)"


@pytest.mark.parametrize("header,expected", [
    (b"To: undisclosed-recipients:;", b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'),
    (b"To: Office: a@x.cn;", b'((NIL NIL "Office" NIL)(NIL NIL "a" "x.cn")(NIL NIL NIL NIL))'),
    (b"To: postmaster", b'((NIL NIL "postmaster" "MISSING_DOMAIN"))'),
    (b"To: <@r.example:joe@c.example>", b'((NIL "@r.example" "joe" "c.example"))'),
    (b"To:", b"NIL"),
])
def test_address_forms(header, expected):
    env = envelope_bytes(parse_message(header + b"\r\n\r\n").envelope)
    assert env == b"(NIL NIL NIL NIL NIL " + expected + b" NIL NIL NIL NIL)"


@pytest.mark.parametrize("subject,expected", [
    (b"Subject: plain", b'"plain"'),
    (b"Subject:", b'""'),                                   # present but empty
    (b"Subject: a\t b  c", b"{5}\r\na b c"),                # tidied "for humans": a literal
    (b'Subject: say "hi"', b'{8}\r\nsay "hi"'),
    (b"Subject: folded\r\n  over lines", b"{17}\r\nfolded over lines"),
])
def test_subject_for_humans(subject, expected):
    env = envelope_bytes(parse_message(subject + b"\r\n\r\n").envelope)
    assert env == b"(NIL " + expected + b" NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_defaults_and_empty_multipart():
    assert envelope_bytes(parse_message(b"\r\n").envelope) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    body = parse_message(b"Content-Type: multipart/mixed; boundary=x\r\n\r\nnothing here\r\n").body
    assert bodystructure_bytes(body) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) '
        b'"mixed" ("boundary" "x") NIL NIL NIL)')
    assert bodystructure_bytes(parse_message(b"\r\nhi\r\n").body, extended=False) == \
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 1)'


def test_imap_string_quoting_rules():
    assert imap_string(None) == b"NIL"
    assert imap_string("") == b'""'
    assert imap_string('a"b\\c') == b'"a\\"b\\\\c"'
    assert imap_string('"""""') == b'"\\"\\"\\"\\"\\""'
    assert imap_string("a\r\nb") == b"{4}\r\na\r\nb"
    assert imap_string("中") == b"{3}\r\n\xe4\xb8\xad"
    assert imap_string(b"a\x00b") == b"{3}\r\na\x80b"     # NUL is not a CHAR8
    assert imap_string_for_humans(b" \t ") == b'""'
    assert imap_string_for_humans(None) == b"NIL"
