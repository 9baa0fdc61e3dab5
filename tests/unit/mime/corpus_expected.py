"""Expected ENVELOPE, BODYSTRUCTURE and sections of the corpus in tests/unit/mime/corpus/, written by hand.

Each value is derived from the standards, not from Postroom's output:
- part boundaries by RFC 2046 §5.1.1 (the CRLF before a delimiter belongs to the delimiter, so a part's
  body ends before it; a part whose first line is blank has an empty header; a line that is not a field
  ends a header that has no blank line);
- BODYSTRUCTURE by RFC 3501 §7.4.2 / §9 (body-type-1part with md5 dsp lang loc extension data, body-ext-mpart
  with params dsp lang loc; text/* carries lines, message/rfc822 envelope body lines), text without charset
  showing the RFC 2045 §5.2 default ("charset" "us-ascii");
- section numbering by RFC 3501 §6.4.5;
- RFC 2231 §3-§4 continuations given as one merged "name*" value (charset'lang' then the octets), and decoded
  values by RFC 2047 / RFC 2231;
- the conventions Postroom keeps with Dovecot and documents in mailserver/imap/render.py and mailboxes/mime.py:
  lower-cased type and parameter names, MISSING_DOMAIN for an address without "@", the comment as the name of
  "addr (Name)", one empty text/plain part for a multipart whose boundary is never found (RFC 3501 has no
  syntax for a multipart without parts), and Dovecot's reading of a multipart reusing its parent's boundary.
Sizes are the lengths of the hand-written part bodies below; lines count their CRLFs.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
EMPTY_PART = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


def load(name: str) -> bytes:
    """A corpus file with CRLF line ends, the form SMTP and APPEND deliver."""
    return (CORPUS / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def addr(name: str | None, mailbox: str, host: str | None) -> bytes:
    q = lambda v: b"NIL" if v is None else b'"' + v.encode() + b'"'  # noqa: E731
    return b"(" + b" ".join((q(name), b"NIL", q(mailbox), q(host))) + b")"


def env(date, subject, from_, to=b"NIL", *, sender=None, message_id=b"NIL", cc=b"NIL") -> bytes:
    """RFC 3501 §7.4.2: sender and reply-to default to from when absent."""
    return b"(" + b" ".join((date, subject, from_, sender or from_, from_, to, cc, b"NIL", b"NIL", message_id)) + b")"


def text(subtype: bytes, params: bytes, body: bytes, encoding=b'"7bit"', *, id_=b"NIL", dsp=b"NIL") -> bytes:
    return b'("text" %s %s %s NIL %s %d %d NIL %s NIL NIL)' % (
        subtype, params, id_, encoding, len(body), body.count(b"\r\n"), dsp)


US_ASCII = b'("charset" "us-ascii")'

# --- msg_11: a message/rfc822 top-level body -------------------------------------------------------------
M11_INNER_TEXT = b"Here is the body of the message.\r\n"
M11_INNER = b"Subject: An enclosed message\r\n\r\n" + M11_INNER_TEXT

# --- msg_15: Outlook Express for Mac, the alternative reuses the mixed boundary ----------------------------
B15 = b"--MS_Mac_OE_3071477847_720252_MIME_Part"
M15_TEXT = b"Some removed test. \r\n"
M15_HTML = (b"<HTML>\r\n<HEAD>\r\n<TITLE>Some removed HTML</TITLE>\r\n</HEAD>\r\n<BODY>\r\nSome removed text.\r\n"
            b"</BODY>\r\n</HTML>\r\n\r\n")
M15_INNER = (b"\r\n" + B15 + b'\r\nContent-type: text/plain; charset="ISO-8859-1"\r\n'
             b"Content-transfer-encoding: quoted-printable\r\n\r\n" + M15_TEXT + b"\r\n"
             + B15 + b'\r\nContent-type: text/html; charset="ISO-8859-1"\r\n'
             b"Content-transfer-encoding: quoted-printable\r\n\r\n" + M15_HTML + b"\r\n" + B15 + b"--\r\n\r\n")
M15_GIF = b"Some removed base64 encoded chars.\r\n"
M15_PARAMS = b'("boundary" "MS_Mac_OE_3071477847_720252_MIME_Part")'
ISO = b'("charset" "ISO-8859-1")'

# --- msg_29: RFC 2231 §4.1's own example of continuations and encoded segments ------------------------------
M29_BODY = b"\r\nHi,\r\n\r\nDo you like this message?\r\n\r\n-Me\r\n"

# --- msg_33: every multipart parameter RFC 2231-encoded, the boundary too ----------------------------------
M33_MIME1 = (b"Content-Type: text/plain; charset*=ansi-x3.4-1968''us-ascii\r\nContent-Disposition: inline\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")

# --- msg_36: groups, mixed-case types, message/external-body ----------------------------------------------
M36_EXT1 = (b"Content-Type: text/plain\r\nContent-ID: <19981222151406.I-D@ietf.org>\r\n\r\n"
            b"ENCODING mime\r\nFILE /internet-drafts/draft-ietf-mboned-mix-00.txt\r\n")
M36_EXT2 = b"Content-Type: text/plain\r\nContent-ID: <19981222151406.I-D@ietf.org>\r\n\r\n"

# --- msg_39: two levels of boundary reuse -------------------------------------------------------------------


def _patch(k: int, n: int) -> bytes:
    return (b'("application" "octet-stream" NIL "<20592.1022586929.%d@example.com>" "patch%d" "base64" 5 NIL NIL '
            b"NIL NIL)" % (k, n))


ALT39 = b' "alternative" ("boundary" "----- =_aaaaaaaaaa1") NIL NIL NIL)'
M39_TEXT = b"--\r\nIt's never too late to have a happy childhood.\r\n"

# --- msg_42: message/rfc822 holding a multipart that is only a close delimiter ------------------------------
M42_HEADER = b'From: webmaster@python.org\r\nTo: zzz@example.com\r\nContent-Type: multipart/mixed; boundary="BBB"\r\n\r\n'
M42_INNER = M42_HEADER + b"--BBB--\r\n"
WEBMASTER = b"(" + addr(None, "webmaster", "python.org") + b")"

# --- msg_47: parts whose header has no blank line ----------------------------------------------------------
M47_HTML = b"<html><body><p>baz</p></body></html>\r\n"

# --- cn_gbk_attachment: RFC 2047 GBK/GB2312/GB18030 words, RFC 2231 continued GBK file name ----------------
CN1_TEXT = "请查收附件。".encode("gbk")
CN1_XLS = b"0M3X9w=="

# --- cn_gb2312_forward: raw 8-bit GB2312 subject, forwarded message with a GB18030 RFC 2231 file name ------
CN2_SUBJECT = b"Fw: " + "会议纪要".encode("gb2312")
CN2_FILENAME = b"gb18030''%95%32%82%36%B5%B5%B0%B8%2E%74%78%74"
CN2_INNER_HEADER = (b"From: clerk@district.test\r\nSubject: =?gb18030?Q?=BB=E1=D2=E9?=\r\n"
                    b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n")
CN2_MIME2 = (b"Content-Type: text/plain; charset=gb18030\r\nContent-Disposition: attachment; filename*=" + CN2_FILENAME
             + b"\r\n\r\n")
CN2_INNER = (CN2_INNER_HEADER + b"--inner\r\nContent-Type: text/plain; charset=gb18030\r\n\r\nok\r\n--inner\r\n"
             + CN2_MIME2 + b"file\r\n--inner--")
GB18030 = b'("charset" "gb18030")'


CASES: dict[str, dict] = {
    "cpython/msg_11.txt": dict(
        envelope=env(b"NIL", b'"The enclosing message"', b"NIL"),
        bodystructure=b'("message" "rfc822" NIL NIL NIL "7bit" %d (NIL "An enclosed message" NIL NIL NIL NIL NIL NIL '
                      b"NIL NIL) %s %d NIL NIL NIL NIL)" % (
                          len(M11_INNER), text(b'"plain"', US_ASCII, M11_INNER_TEXT), M11_INNER.count(b"\r\n")),
        sections={"1": M11_INNER, "TEXT": M11_INNER, "1.HEADER": b"Subject: An enclosed message\r\n\r\n",
                  "1.TEXT": M11_INNER_TEXT, "1.1": M11_INNER_TEXT},
    ),
    "cpython/msg_15.txt": dict(
        envelope=env(b"NIL", b'"XX"', b"(" + addr(None, "xx", "xx.dk") + b")",
                     b"(" + addr(None, "XX", "MISSING_DOMAIN") + b")", message_id=b'"<xxxx>"'),
        bodystructure=b"((" + text(b'"plain"', ISO, M15_TEXT, b'"quoted-printable"')
                      + text(b'"html"', ISO, M15_HTML, b'"quoted-printable"')
                      + b' "alternative" ' + M15_PARAMS + b" NIL NIL NIL)"
                      + b'("image" "gif" ("name" "xx.gif" "x-mac-creator" "6F676C65" "x-mac-type" "47494666") NIL NIL '
                      + b'"base64" %d NIL ("attachment" NIL) NIL NIL)' % len(M15_GIF)
                      + b' "mixed" ' + M15_PARAMS + b" NIL NIL NIL)",
        sections={"1": M15_INNER, "1.1": M15_TEXT, "1.2": M15_HTML, "2": M15_GIF},
        binary={"1.1": b"Some removed test.\r\n"},   # RFC 2045 §6.7 rule 3: the trailing space goes
    ),
    "cpython/msg_24.txt": dict(
        envelope=env(b"NIL", b'"A subject"', b"(" + addr(None, "bperson", "dom.ain") + b")",
                     b"(" + addr(None, "aperson", "dom.ain") + b")"),
        bodystructure=b"(" + EMPTY_PART + b' "mixed" ("boundary" "BOUNDARY") NIL NIL NIL)',
        sections={"1": b"", "1.MIME": b"\r\n", "TEXT": b"--BOUNDARY\r\n\r\n\r\n--BOUNDARY--\r\n"},
    ),
    "cpython/msg_29.txt": dict(
        envelope=env(b'"Fri, 4 May 2001 14:05:44 -0400"', b'"This is a test message"',
                     b"(" + addr("John X. Doe", "bbb", "ddd.com") + b")", b"(" + addr(None, "bbb", "zzz.org") + b")",
                     message_id=b'"<15090.61304.110929.45684@aaa.zzz.org>"'),
        bodystructure=text(b'"plain"', b'("charset" "us-ascii" "title*" "us-ascii\'en\'This%20is%20even%20more%20'
                                       b"%2A%2A%2Afun%2A%2A%2A%20isn't it!\")", M29_BODY),
        sections={"1": M29_BODY, "TEXT": M29_BODY},
        params={(): {"charset": "us-ascii", "title": "This is even more ***fun*** isn't it!"}},
    ),
    "cpython/msg_31.txt": dict(
        envelope=env(b"NIL", b"NIL", b"(" + addr(None, "aperson", "dom.ain") + b")"),
        bodystructure=b"(" + EMPTY_PART + b' "mixed" ("boundary" "BOUNDARY_") NIL NIL NIL)',
        sections={"1": b"", "TEXT": b"--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nmessage 1\r\n\r\n--BOUNDARY\r\n"
                                    b"Content-Type: text/plain\r\n\r\nmessage 2\r\n\r\n--BOUNDARY--\r\n"},
    ),
    "cpython/msg_33.txt": dict(
        envelope=env(b'"Wed, 27 Sep 2000 11:11:09 -0500"', b'"Re: Limiting Perl CPU Utilization..."',
                     b"(" + addr("Anne Person", "aperson", "example.com") + b")",
                     b"(" + addr("Barney Dude", "bdude", "example.com") + b")",
                     sender=b"(" + addr(None, "owner-freebsd-isp", "FreeBSD.ORG") + b")"),
        bodystructure=b"(" + text(b'"plain"', b'("charset*" "ansi-x3.4-1968\'\'us-ascii")', b"part 1\r\n",
                                  b'"quoted-printable"', dsp=b'("inline" NIL)')
                      + text(b'"plain"', US_ASCII, b"part 2\r\n", dsp=b'("inline" NIL)')
                      + b' "signed" ("micalg*" "ansi-x3.4-1968\'\'pgp-md5" "protocol*" '
                        b'"ansi-x3.4-1968\'\'application%2Fpgp-signature" "boundary*" '
                        b'"ansi-x3.4-1968\'\'EeQfGwPcQSOJBaQU") ("inline" NIL) NIL NIL)',
        sections={"1": b"part 1\r\n", "2": b"part 2\r\n", "1.MIME": M33_MIME1},
        binary={"1": b"part 1\r\n"},
        params={(): {"micalg": "pgp-md5", "protocol": "application/pgp-signature", "boundary": "EeQfGwPcQSOJBaQU"}},
    ),
    "cpython/msg_36.txt": dict(
        envelope=env(b'"Tue, 22 Dec 1998 16:55:06 -0500"', b'"I-D ACTION:draft-ietf-mboned-mix-00.txt"',
                     b"(" + addr(None, "Internet-Drafts", "ietf.org") + b")",
                     b"(" + addr(None, "IETF-Announce", None) + b"(NIL NIL NIL NIL))"),   # RFC 3501 §7.4.2 group
        bodystructure=b"(" + text(b'"plain"', US_ASCII, b"Blah blah blah\r\n")
                      + b'(("message" "external-body" ("access-type" "mail-server" "server" "mailserv@ietf.org") '
                        b'NIL NIL "7bit" %d NIL NIL NIL NIL)' % len(M36_EXT1)
                      + b'("message" "external-body" ("name" "draft-ietf-mboned-mix-00.txt" "site" "ftp.ietf.org" '
                        b'"access-type" "anon-ftp" "directory" "internet-drafts") NIL NIL "7bit" %d NIL NIL NIL NIL)'
                        % len(M36_EXT2)
                      + b' "alternative" ("boundary" "OtherAccess") NIL NIL NIL) "mixed" ("boundary" "NextPart") NIL NIL '
                        b"NIL)",
        sections={"1": b"Blah blah blah\r\n", "1.MIME": b"\r\n", "2.1": M36_EXT1, "2.2": M36_EXT2},
    ),
    "cpython/msg_39.txt": dict(
        envelope=env(b"NIL", b"NIL", b"NIL"),
        bodystructure=b"(((" + _patch(3, 1) + _patch(4, 2) + ALT39 + b"(" + _patch(7, 3) + _patch(8, 4) + ALT39
                      + b"(" + _patch(11, 5) + _patch(12, 6) + ALT39
                      + b' "mixed" ("boundary" "----- =_aaaaaaaaaa1") NIL NIL NIL)'
                      + text(b'"plain"', US_ASCII, M39_TEXT, id_=b'"<20592.1022586929.15@example.com>"')
                      + b' "mixed" ("boundary" "----- =_aaaaaaaaaa0") NIL NIL NIL)',
        sections={"1.1.1": b"XXX\r\n", "1.3.2": b"XXX\r\n", "2": M39_TEXT},
    ),
    "cpython/msg_41.txt": dict(
        envelope=env(b'"Sun, 11 Jul 2004 16:09:27 -0300"', b'"64423"',
                     b"(" + addr("Allison Dunlap", "xxx", "example.com") + b")",
                     b"(" + addr(None, "yyy", "example.com") + b")"),
        bodystructure=b"(" + EMPTY_PART + b' "alternative" NIL NIL NIL NIL)',
        sections={"1": b"", "TEXT": b"Blah blah blah\r\n"},
    ),
    "cpython/msg_42.txt": dict(
        envelope=env(b"NIL", b"NIL", b"(" + addr("Mail Delivery Subsystem", "xxx", "example.com") + b")",
                     b"(" + addr(None, "yyy", "example.com") + b")"),
        bodystructure=b"(" + text(b'"plain"', US_ASCII, b"Stuff\r\n")
                      + b'("message" "rfc822" NIL NIL NIL "7bit" %d ' % len(M42_INNER)
                      + env(b"NIL", b"NIL", WEBMASTER, b"(" + addr(None, "zzz", "example.com") + b")")
                      + b" (" + EMPTY_PART + b' "mixed" ("boundary" "BBB") NIL NIL NIL) %d NIL NIL NIL NIL)'
                      % M42_INNER.count(b"\r\n")
                      + b' "mixed" ("boundary" "AAA") NIL NIL NIL)',
        sections={"1": b"Stuff\r\n", "2": M42_INNER, "2.HEADER": M42_HEADER, "2.TEXT": b"--BBB--\r\n", "2.1": b""},
    ),
    "cpython/msg_47.txt": dict(
        envelope=env(b'"01 Jan 2001 00:01+0000"', b"NIL", b"(" + addr(None, "arthur", "example.example") + b")"),
        bodystructure=b"(" + text(b'"plain"', US_ASCII, b"bar\r\n") + text(b'"html"', US_ASCII, M47_HTML)
                      + b' "mixed" ("boundary" "foo") NIL NIL NIL)',
        sections={"1": b"bar\r\n", "1.MIME": b"Content-Type: text/plain\r\n", "2": M47_HTML},
    ),
    "cn_gbk_attachment.eml": dict(
        envelope=env(b'"Mon, 02 Nov 2026 10:00:00 +0800"', b'"=?GB18030?B?udjT2jIwMjbE6tSky+O1xM2o1qo=?="',
                     b"(" + addr("=?GBK?B?1cXI/Q==?=", "zhangsan", "city.test") + b")",
                     b"(" + addr("=?GB2312?B?wO7LxA==?=", "lisi", "city.test") + addr(None, "wangwu", "district.test")
                     + b")", message_id=b'"<cn-1@city.test>"'),
        bodystructure=b"(" + text(b'"plain"', b'("charset" "GBK")', CN1_TEXT, b'"8bit"')
                      + b'("application" "vnd.ms-excel" ("name" "=?GBK?B?1KTL47HtLnhscw==?=") NIL NIL "base64" %d NIL '
                        b'("attachment" ("filename*" "GBK\'\'%%D4%%A4%%CB%%E3%%B1%%ED.xls")) NIL NIL)' % len(CN1_XLS)
                      + b' "mixed" ("boundary" "=_cn1") NIL NIL NIL)',
        sections={"1": CN1_TEXT, "2": CN1_XLS},
        binary={"2": b"\xd0\xcd\xd7\xf7"},
        subject="关于2026年预算的通知", names={"from": ["张三"], "to": ["李四", None]},
        filenames={(2,): "预算表.xls"},
    ),
    "cn_gb2312_forward.eml": dict(
        envelope=env(b'"Tue, 03 Nov 2026 09:30:00 +0800"', b"{%d}\r\n" % len(CN2_SUBJECT) + CN2_SUBJECT,
                     b"(" + addr(None, "office", "district.test") + b")", b"(" + addr(None, "alice", "city.test") + b")"),
        bodystructure=b"(" + text(b'"plain"', b'("charset" "gb2312")', "会议纪要".encode("gb2312"))
                      + b'("message" "rfc822" NIL NIL NIL "7bit" %d ' % len(CN2_INNER)
                      + env(b"NIL", b'"=?gb18030?Q?=BB=E1=D2=E9?="', b"(" + addr(None, "clerk", "district.test") + b")")
                      + b" (" + text(b'"plain"', GB18030, b"ok")
                      + text(b'"plain"', GB18030, b"file", dsp=b'("attachment" ("filename*" "' + CN2_FILENAME + b'"))')
                      + b' "alternative" ("boundary" "inner") NIL NIL NIL) %d NIL NIL NIL NIL)' % CN2_INNER.count(b"\r\n")
                      + b' "mixed" ("boundary" "outer") NIL NIL NIL)',
        sections={"1": "会议纪要".encode("gb2312"), "2": CN2_INNER, "2.HEADER": CN2_INNER_HEADER, "2.1": b"ok",
                  "2.2": b"file", "2.2.MIME": CN2_MIME2},
        subject="Fw: 会议纪要", inner_subject="会议", filenames={(2, 2): "\U00020000档案.txt"},
    ),
}


def section(spec: str) -> tuple[tuple[int, ...], str]:
    """"2.1.MIME" -> ((2, 1), "MIME"); "TEXT" -> ((), "TEXT")."""
    path: list[int] = []
    rest = []
    for piece in spec.split("."):
        if piece.isdigit() and not rest:
            path.append(int(piece))
        else:
            rest.append(piece)
    return tuple(path), ".".join(rest)
