"""parse_message: structure, offsets, decoding, text extract, attachments, JSON, broken input."""

from __future__ import annotations

import email
import email.policy

import pytest

from mailboxes import mime
from mailboxes.mime import (
    ParsedMessage, find_part, header_fields, iter_parts, parse_message, section_range,
)
from tests.unit.mime import samples
from tests.unit.mime.samples import b64, pct, word


def leaves(body):
    return [(path, p) for path, p in iter_parts(body) if not p.is_multipart and p.message is None]


# --- Chinese mail -------------------------------------------------------------------------

def test_gbk_message_subject_filename_and_text():
    raw = samples.gbk_message()
    m = parse_message(raw)
    assert m.envelope.subject_decoded == samples.GBK_SUBJECT
    assert m.envelope.subject.startswith("=?gb2312?B?")          # raw form kept for IMAP
    assert m.envelope.from_[0].name_decoded == "张三"
    assert m.envelope.from_[0].addr_spec == "zhangsan@tax.example.gov.cn"
    assert [a.addr_spec for a in m.envelope.to] == ["lisi@tax.example.gov.cn",
                                                   "wangwu@tax.example.gov.cn"]
    assert m.envelope.to[0].name_decoded == "李四"      # encoded word inside quotes (Outlook)
    assert m.envelope.date_parsed.isoformat() == "2024-03-04T09:15:00+08:00"
    assert "请于三月底前完成个人所得税年度汇算" in m.text
    # The extract is the body only (SEARCH BODY, RFC 3501 §6.4.4); the header is indexed on its own.
    assert samples.GBK_SUBJECT not in m.text and "张三" not in m.text
    assert [(a.path, a.filename, a.content_type, a.size) for a in m.attachments] == [
        ((2,), samples.GBK_FILENAME, "application/msword", 304)]
    doc = find_part(m.body, (2,))
    # continuations merged into one extended value, not decoded (what IMAP clients get)
    assert doc.disposition_params == (("filename*", "GBK''" + pct(samples.GBK_FILENAME, "gbk").decode()),)
    assert mime.decoded_params(doc.params)["name"] == samples.GBK_FILENAME
    assert doc.filename == samples.GBK_FILENAME
    assert dict(m.headers_decoded)["subject"] == samples.GBK_SUBJECT


def test_big5_message_with_raw_8bit_name():
    m = parse_message(samples.big5_message())
    assert m.envelope.subject_decoded == samples.BIG5_SUBJECT
    # unencoded Big5 display name: decoded with the body's declared charset as the hint
    assert m.envelope.from_[0].name_decoded == "陳小明"
    assert m.body.type == "text" and m.body.param("charset") == "big5"
    assert samples.BIG5_BODY in m.text
    assert m.attachments == ()


def test_gb18030_four_byte_characters_and_html_meta_charset():
    m = parse_message(samples.gb18030_message())
    assert m.envelope.subject_decoded == samples.GB18030_TEXT
    assert samples.GB18030_TEXT in m.text
    assert "第二段&结束" in m.text
    assert "不应出现" not in m.text and "color" not in m.text     # script and style skipped
    assert "<p>" not in m.text


def test_gb2312_label_with_gbk_only_character():
    # 镕 and 喆 are in GBK but not GB2312; mailers label such text gb2312 anyway.
    raw = (b"Subject: " + word("朱镕基 陶喆", "gbk").replace(b"gbk", b"gb2312") + b"\r\n"
           b"Content-Type: text/plain; charset=gb2312\r\n\r\n" + "朱镕基".encode("gbk") + b"\r\n")
    m = parse_message(raw)
    assert m.envelope.subject_decoded == "朱镕基 陶喆"
    assert "朱镕基" in m.text


# --- structure and numbering --------------------------------------------------------------

def test_nested_multipart_structure_and_paths():
    m = parse_message(samples.nested_message())
    got = [(path, p.content_type) for path, p in iter_parts(m.body)]
    assert got == [((1,), "multipart/alternative"), ((1, 1), "text/plain"),
                   ((1, 2), "text/html"), ((2,), "application/pdf")]
    assert find_part(m.body, (1, 2)).subtype == "html"
    assert find_part(m.body, ()) is m.body
    assert find_part(m.body, (3,)) is None and find_part(m.body, (2, 1)) is None
    assert m.text.count("Quarterly figures attached.") == 1     # one of the alternatives only
    assert [(a.path, a.filename, a.size) for a in m.attachments] == [((2,), "report.pdf", 9 + 1024)]


def test_message_rfc822_part_has_its_own_envelope_and_numbering():
    raw = samples.rfc822_message()
    m = parse_message(raw)
    fwd = find_part(m.body, (2,))
    assert fwd.content_type == "message/rfc822"
    env = fwd.message.envelope
    assert env.subject_decoded == "原始邮件" and env.message_id == "<orig@example.cn>"
    assert env.from_[0].name_decoded == "王五"
    # RFC 3501 §6.4.5: 2.1 and 2.2 are the parts of the embedded multipart
    assert find_part(m.body, (2, 1)).content_type == "text/plain"
    assert find_part(m.body, (2, 2)).content_type == "image/png"
    start, end = section_range(m.body, (2,), "HEADER")
    assert raw[start:end].startswith(b"From: =?gbk?B?") and raw[start:end].endswith(b"\r\n\r\n")
    start, end = section_range(m.body, (2,), "TEXT")
    # the CRLF before "--fwd" belongs to the outer delimiter (RFC 2046 §5.1.1)
    assert raw[start:end].startswith(b"--in\r\n") and raw[start:end].endswith(b"--in--")
    start, end = section_range(m.body, (2,), "MIME")
    assert raw[start:end] == b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
    assert section_range(m.body, (1,), "HEADER") is None
    assert "这是被转发的正文" in m.text and "原始邮件" in m.text
    # the forwarded message is one attachment; its own image is not listed separately
    assert [(a.path, a.filename, a.content_type) for a in m.attachments] == [
        ((2,), "原始邮件.eml", "message/rfc822")]


@pytest.mark.parametrize("date,expected", [
    ("Mon, 4 Mar 2024 09:15:00 +0800", "2024-03-04T09:15:00+08:00"),
    ("4 Mar 2024 09:15 +0800 (CST)", "2024-03-04T09:15:00+08:00"),
    ("Mon, 4 Mar 2024 09:15:00 -0000", "2024-03-04T09:15:00+00:00"),   # unknown zone: UTC
    ("2024-03-04 09:15:00+08:00", "2024-03-04T09:15:00+08:00"),
    ("not a date", None),
])
def test_sent_date_for_search(date, expected):
    parsed = parse_message(b"Date: " + date.encode() + b"\r\n\r\n").envelope.date_parsed
    assert (parsed.isoformat() if parsed else None) == expected


def test_non_multipart_body_is_part_1():
    raw = samples.simple_message()
    m = parse_message(raw)
    assert find_part(m.body, (1,)) is m.body
    assert find_part(m.body, (2,)) is None and find_part(m.body, (1, 1)) is None
    assert section_range(m.body, (1,)) == (m.header_end, len(raw))
    assert raw[slice(*section_range(m.body, (), "TEXT"))] == b"hello\r\nworld\r\n"
    assert m.body.lines == 2 and m.body.size == 14


# --- offsets ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(samples.WELL_FORMED))
def test_leaf_bodies_equal_the_stdlib_parsers_payloads(name):
    """raw[body_start:body_end] is each part's body, checked against the stdlib email parser."""
    raw = samples.WELL_FORMED[name]()
    m = parse_message(raw)
    ours = [raw[p.body_start:p.body_end] for _, p in leaves(m.body)]
    ref = email.message_from_bytes(raw, policy=email.policy.compat32)
    # _payload: the undecoded body text (get_payload() would decode 8-bit text by charset)
    theirs = [part._payload.encode("ascii", "surrogateescape")
              for part in ref.walk() if not part.is_multipart()]
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(samples.WELL_FORMED))
def test_headers_and_sizes_line_up(name):
    raw = samples.WELL_FORMED[name]()
    m = parse_message(raw)
    assert raw[:m.header_end].endswith(b"\r\n\r\n")
    assert m.header_end == m.body.body_start and m.size == len(raw)
    for _, part in iter_parts(m.body):
        header = raw[part.header_start:part.body_start]
        assert header == b"" or header.endswith(b"\r\n\r\n") or header == b"\r\n" \
            or part.header_start == 0
        assert part.size == part.body_end - part.body_start
        if part.type == "text" or part.message is not None:
            assert part.lines == raw.count(b"\n", part.body_start, part.body_end)


def test_header_fields_keeps_folding_and_adds_blank_line():
    raw = samples.gbk_message()
    got = header_fields(raw, [b"TO", "date"])
    assert got.startswith(b"To: \"=?gb2312?B?")
    assert b",\r\n\twangwu@tax.example.gov.cn\r\nDate: Mon, 4 Mar 2024 09:15:00 +0800\r\n\r\n" in got
    assert got.endswith(b"+0800\r\n\r\n")
    assert header_fields(raw, ["x-none"]) == b"\r\n"
    rest = header_fields(raw, ["to", "date", "subject", "from", "message-id", "mime-version",
                               "content-type"], exclude=True)
    assert rest == b"X-Mailer: Foxmail 7.2.25\r\n\r\n"


# --- broken MIME --------------------------------------------------------------------------

def test_missing_closing_boundary_runs_to_the_end():
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nfirst\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
           b"second, never closed\r\n")
    m = parse_message(raw)
    assert [raw[p.body_start:p.body_end] for _, p in leaves(m.body)] == [
        b"first", b"second, never closed\r\n"]
    assert "second, never closed" in m.text


def test_bad_base64_still_indexes_what_decodes():
    raw = (b"Content-Type: text/plain; charset=gbk\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + b64("税务通知".encode("gbk"))[:-3] + b"!!*\r\n==AB\r\n")
    m = parse_message(raw)
    assert "税务" in m.text


def test_header_line_without_colon_starts_the_body():
    raw = b"Subject: ok\r\nthis line has no colon\r\nX-Not: a header\r\n"
    m = parse_message(raw)
    assert m.envelope.subject == "ok"
    assert raw[m.body.body_start:] == b"this line has no colon\r\nX-Not: a header\r\n"
    assert "this line has no colon" in m.text


def test_no_blank_line_and_no_body():
    raw = b"Subject: only headers\r\nFrom: a@b.c"
    m = parse_message(raw)
    assert m.header_end == len(raw) and m.body.size == 0
    assert m.envelope.from_[0].addr_spec == "a@b.c"
    assert header_fields(raw, ["from"]) == b"From: a@b.c\r\n\r\n"


def test_nul_bytes_and_8bit_headers():
    raw = (b"Subject: " + "增值税发票".encode("gbk") + b"\x00tail\r\n"
           b"From: " + "财务科".encode("gbk") + b" <cwk@example.cn>\r\n"
           b"Content-Type: text/plain; charset=gbk\r\n\r\nbody\x00with NUL " + "内容".encode("gbk"))
    m = parse_message(raw)
    assert m.envelope.subject_decoded == "增值税发票\x00tail"
    assert m.envelope.from_[0].name_decoded == "财务科"
    assert m.envelope.subject.encode("utf-8", "surrogateescape") == raw[9:raw.index(b"\r\n")]
    assert "内容" in m.text


@pytest.mark.parametrize("raw", [
    b"", b"\r\n", b"\n\n\n", b"From nobody Mon Jan 1 00:00:00 2024\nSubject: x\n\nmbox",
    b"Content-Type: multipart/mixed\r\n\r\nno boundary parameter",
    b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nthe boundary never appears",
    b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: /\r\nContent-Transfer-Encoding: base64\r\n\r\n====",
    b"Content-Type: text/plain; charset=no-such-charset\r\n\r\n\xff\xfe\xfd",
    b"To: ,,,;;;<<<>>>@@@:::\"\r\nCc: (unclosed comment\r\nFrom: \"unclosed\r\n\r\n",
    b"Subject: =?gbk?B?!!!?= =?x?Q?=ZZ?= =?utf-8?B?5Lit?\r\n\r\n",
    bytes(range(256)) * 3,
])
def test_garbage_never_raises(raw):
    m = mime._parse(raw)      # without the safety net, so a bug would show here
    assert m.size == len(raw)
    assert ParsedMessage.from_json(m.to_json()) == m


@pytest.mark.timeout(60)  # liveness only: milliseconds (benchmarks/latency_bench.py, parse)
def test_deep_nesting_is_bounded():
    depth = 3000
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                   for i in range(depth)) + b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    m = mime._parse(raw)
    assert sum(1 for _ in iter_parts(m.body)) <= mime.MAX_DEPTH + 1


# --- JSON ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(samples.WELL_FORMED))
def test_json_round_trip(name):
    m = parse_message(samples.WELL_FORMED[name]())
    s = m.to_json()
    assert ParsedMessage.from_json(s) == m
    assert ParsedMessage.from_json(s.encode("utf-8")) == m      # encodable: no lone surrogates
    small = ParsedMessage.from_json(m.to_json(include_text=False))
    assert small.text == "" and small.body == m.body and small.envelope == m.envelope


def test_json_keeps_raw_8bit_header_bytes():
    raw = b"Subject: " + "发票".encode("gbk") + b"\r\n\r\n"
    m = parse_message(raw)
    back = ParsedMessage.from_json(m.to_json().encode("utf-8").decode("utf-8"))
    assert back.envelope.subject.encode("utf-8", "surrogateescape") == "发票".encode("gbk")


def test_json_is_compact():
    raw = samples.nested_message()
    assert len(parse_message(raw).to_json(include_text=False)) < 1200


# --- large input (how fast: benchmarks/latency_bench.py, parse) ----------------------------

def _four_kib_message() -> bytes:
    raw = samples.gbk_message()
    filler = b"".join(b"Received: from relay%d.example.gov.cn by mx.example.gov.cn; "
                      b"Mon, 4 Mar 2024 09:15:0%d +0800\r\n" % (i, i % 10) for i in range(28))
    raw = filler + raw
    assert 3800 <= len(raw) <= 4600
    return raw


@pytest.mark.timeout(60)  # liveness only: attachments are scanned, never decoded
def test_a_large_attachment_is_scanned_not_decoded():
    small = _four_kib_message()
    assert parse_message(small).size == len(small)
    big = samples.gbk_message().replace(b64(b"\xd0\xcf\x11\xe0" + bytes(300)),
                                        b64(bytes(range(256)) * 80000))
    assert len(big) > 20_000_000
    m = parse_message(big)
    assert m.attachments[0].size == 256 * 80000
