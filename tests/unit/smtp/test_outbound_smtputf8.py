"""When a message needs a next hop with SMTPUTF8 (RFC 6531 §3.2, RFC 6532 §3): addresses and header bytes."""

from __future__ import annotations

from delivery.outbound import needs_smtputf8

HEAD = b"From: a@city.test\r\nTo: b@remote.test\r\nSubject: "


def test_ascii_addresses_and_headers_need_nothing_even_with_an_8bit_body():
    assert not needs_smtputf8("a@city.test", ["b@remote.test"], HEAD + b"hi\r\n\r\n" + "正文".encode())


def test_a_non_ascii_address_needs_it():
    assert needs_smtputf8("a@city.test", ["用户@remote.test"], HEAD + b"hi\r\n\r\nbody\r\n")
    assert needs_smtputf8("张伟@city.test", ["b@remote.test"], HEAD + b"hi\r\n\r\nbody\r\n")


def test_a_raw_utf8_header_needs_it_a_raw_gbk_header_does_not():
    assert needs_smtputf8("a@city.test", ["b@remote.test"], HEAD + "通知".encode() + b"\r\n\r\nbody\r\n")
    legacy = HEAD + "关于召开年度工作会议的通知".encode("gbk") + b"\r\n\r\nbody\r\n"
    assert not needs_smtputf8("a@city.test", ["b@remote.test"], legacy)


def test_only_the_header_section_is_read():
    assert not needs_smtputf8("a@city.test", ["b@remote.test"], b"\r\n" + "通知".encode())
    assert needs_smtputf8("a@city.test", ["b@remote.test"], HEAD + "通知".encode())  # no body at all
