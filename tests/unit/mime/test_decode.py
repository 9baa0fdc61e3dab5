"""Header-value decoding as Chinese clients send it: RFC 2047, RFC 2231, raw 8-bit, addresses."""

from __future__ import annotations

import base64

import pytest

from mailboxes.charsets import (
    codec_for, decode_header_value, decode_text, decoded_params, html_to_text, merge_rfc2231,
    parse_params,
)
from mailboxes.headers import Address, parse_addresses as _parse_addresses
from tests.unit.mime.samples import word


def test_plain_and_mixed_values():
    assert decode_header_value("hello world") == "hello world"
    assert decode_header_value("Re: " + word("通知", "gbk").decode()) == "Re: 通知"
    assert decode_header_value(word("通知", "gbk").decode() + " (urgent)") == "通知 (urgent)"
    assert decode_header_value(None) == ""


def test_whitespace_between_encoded_words_is_dropped():
    # RFC 2047 §6.2
    value = word("税务", "gbk").decode() + " \t" + word("申报", "gbk").decode()
    assert decode_header_value(value) == "税务申报"


def test_gbk_character_split_across_two_words():
    data = "增值税专用发票".encode("gbk")
    first, second = data[:5], data[5:]        # cuts the third character in half
    value = ("=?GBK?B?" + base64.b64encode(first).decode() + "?= =?GBK?B?"
             + base64.b64encode(second).decode() + "?=")
    assert decode_header_value(value) == "增值税专用发票"


def test_words_without_whitespace_and_inside_text():
    w = word("发票", "gb2312").decode()
    assert decode_header_value(w + w) == "发票发票"
    assert decode_header_value("abc" + w + "def") == "abc发票def"


def test_q_encoding_and_lowercase_labels():
    assert decode_header_value(word("税 务", "gbk", "Q").decode().lower()) == "税 务"
    assert decode_header_value("=?utf-8?q?caf=C3=A9_bar?=") == "café bar"


def test_unencoded_8bit_gbk_header():
    raw = "关于开展税收宣传月活动的通知".encode("gbk")
    assert decode_header_value(raw) == "关于开展税收宣传月活动的通知"
    assert decode_header_value(raw.decode("utf-8", "surrogateescape")) == "关于开展税收宣传月活动的通知"


def test_unencoded_8bit_big5_needs_the_hint():
    raw = "稅務公告".encode("big5")
    assert decode_header_value(raw, fallback="big5") == "稅務公告"


def test_broken_words_do_not_raise():
    assert decode_header_value("=?gbk?B?###?=") == ""
    assert decode_header_value("=?no-such?B?5Lit?=") == "中"          # unknown label: guessed
    assert decode_header_value("=?gbk?B?1tDOxA?=") == "中文"          # missing padding
    assert decode_header_value("=?gbk?B?1tD") == "=?gbk?B?1tD"        # unterminated: left as is


def test_codec_aliases():
    assert codec_for("GB2312") == codec_for("gbk") == codec_for("x-gbk") == "gb18030"
    assert codec_for("BIG5") == "cp950" and codec_for("big5-hkscs") == "big5hkscs"
    assert codec_for("us-ascii") is None and codec_for("bogus") is None
    assert codec_for("utf-8*zh-cn") == "utf-8"          # RFC 2231 §5 language suffix
    for label in ("base64", "rot13", "zlib", "gb\x00k", "gbk\udcff"):
        assert codec_for(label) is None                   # not text encodings / not labels
    assert decode_header_value("=?base64?B?SGk=?=") == "Hi"
    assert decode_text(b"\xd6\xd0\xce\xc4", "zlib") == "中文"


@pytest.mark.parametrize("data,charset,expected", [
    ("中文".encode("utf-8"), None, "中文"),
    ("中文".encode("gbk"), None, "中文"),               # unlabelled GBK
    ("中文".encode("gbk"), "us-ascii", "中文"),         # mislabelled
    ("中文".encode("gbk"), "utf-8", "中文"),            # mislabelled the other way
    ("café".encode("latin-1"), None, "café"),
    ("中文".encode("gbk") + b"\xff", "gbk", "中文\ufffd"),   # one bad byte: keep the rest
    (b"~{VPND~}", "hz-gb-2312", "中文"),                  # 7-bit HZ must not take the ASCII shortcut
    ("ab".encode("utf-16-le"), "utf-16le", "ab"),         # nor UTF-16 that happens to be ASCII bytes
])
def test_decode_text_fallbacks(data, charset, expected):
    assert decode_text(data, charset) == expected


def test_decode_text_cut_mid_character():
    data = "税务局".encode("gbk")[:-1]
    assert decode_text(data, "gbk", final=False) == "税务"


def test_html_to_text():
    html = ("<html><head><title>t</title><style>.a{}</style></head><body>"
            "<script>alert(1)</script><p>第一段</p><div>第二&nbsp;段 &lt;ok&gt;</div></body></html>")
    assert html_to_text(html) == "第一段\n第二 段 <ok>"


# --- parameters ---------------------------------------------------------------------------

def test_rfc2231_continuations_merge_like_dovecot():
    params = parse_params("; filename*0*=GBK''%D6%D0; filename*1*=%CE%C4; filename*2=.doc", 0)
    assert params == (("filename*", "GBK''%D6%D0%CE%C4.doc"),)
    assert decoded_params(params) == {"filename": "中文.doc"}


def test_rfc2231_unencoded_first_segment_and_percent():
    assert merge_rfc2231([("name*0", "100%"), ("name*1*", "%D6%D0")]) == (("name*", "''100%25%D6%D0"),)
    assert merge_rfc2231([("name*0", "a"), ("name*2", "c")]) == (("name*0", "a"), ("name*2", "c"))


def test_param_forms_from_chinese_clients():
    enc = word("办理指南.doc", "gb2312").decode()
    assert decoded_params(parse_params(f'; name="{enc}"', 0)) == {"name": "办理指南.doc"}
    assert decoded_params(parse_params(f"; name={enc}", 0)) == {"name": "办理指南.doc"}   # unquoted
    raw8 = "办理指南.doc".encode("gbk").decode("utf-8", "surrogateescape")
    assert decoded_params(parse_params(f'; filename="{raw8}"', 0)) == {"filename": "办理指南.doc"}
    # both forms present: the RFC 2231 one wins
    both = parse_params("; filename=\"x.doc\"; filename*=utf-8''%E4%B8%AD.doc", 0)
    assert decoded_params(both) == {"filename": "中.doc"}


def test_params_tolerate_junk():
    assert parse_params('; charset=gbk (Chinese); ;; format=flowed; =x; junk; name="a\\"b"', 0) == (
        ("charset", "gbk"), ("format", "flowed"), ("name", 'a"b'))
    assert parse_params('; name="unterminated', 0) == (("name", "unterminated"),)


# --- addresses ----------------------------------------------------------------------------

def A(name, mailbox, host, adl=None, decoded=None):
    return Address(name, adl, mailbox, host, name if decoded is None else decoded)


def test_addresses_common_forms():
    assert _parse_addresses('"Zhang, San" <zs@example.cn>, ls@example.cn (Li Si)') == (
        A("Zhang, San", "zs", "example.cn"), A("Li Si", "ls", "example.cn"))
    assert _parse_addresses("<zs@example.cn>") == (A(None, "zs", "example.cn"),)
    assert _parse_addresses("John Q. Public <jqp@example.com>") == (
        A("John Q. Public", "jqp", "example.com"),)


def test_addresses_groups_are_marked():
    # RFC 3501 §7.4.2: start marker (NIL NIL name NIL), end marker (NIL NIL NIL NIL)
    start, end = Address(None, None, "undisclosed-recipients", None), Address(None, None, None, None)
    assert _parse_addresses("undisclosed-recipients:;") == (start, end)
    got = _parse_addresses("Tax Office: a@x.cn, B <b@x.cn>; c@y.cn")
    assert got == (Address(None, None, "Tax Office", None), A(None, "a", "x.cn"), A("B", "b", "x.cn"),
                   end, A(None, "c", "y.cn"))


def test_addresses_route_missing_parts_and_outlook_semicolons():
    assert _parse_addresses("<@relay.example,@b.example:joe@c.example>") == (
        A(None, "joe", "c.example", adl="@relay.example,@b.example"),)
    assert _parse_addresses("postmaster") == (A(None, "postmaster", "MISSING_DOMAIN"),)
    assert _parse_addresses("a@x.cn; b@x.cn") == (A(None, "a", "x.cn"), A(None, "b", "x.cn"))
    assert _parse_addresses("") == () and _parse_addresses(" , ") == ()


def test_addresses_with_cjk_names():
    name = word("张三", "gbk").decode()
    got = _parse_addresses(f"{name}<zs@example.cn>")          # no space before "<"
    assert got == (Address(name, None, "zs", "example.cn", "张三"),)
    raw8 = "李四".encode("gbk").decode("utf-8", "surrogateescape")
    assert _parse_addresses(f"{raw8} <ls@example.cn>")[0].name_decoded == "李四"
