"""Received: trace header (RFC 5321 §4.4)."""

from datetime import datetime, timedelta, timezone

import pytest

from delivery.received import received_header, with_protocol

WHEN = datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def test_full_header():
    h = received_header(
        helo="client.example.org",
        client_ip="192.0.2.5",
        client_rdns="mail.example.org",
        by_host="mx.tax.example.cn",
        protocol=with_protocol(esmtp=True, tls=True, authenticated=True),
        when=WHEN,
        queue_id="Q1a2b3",
        recipient="zhang.san@tax.example.cn",
        tls_info="TLSv1.3 TLS_AES_256_GCM_SHA384",
    )
    assert h == (
        b"Received: from client.example.org (mail.example.org [192.0.2.5])\r\n"
        b"\tby mx.tax.example.cn with ESMTPSA (TLSv1.3 TLS_AES_256_GCM_SHA384) id Q1a2b3\r\n"
        b"\tfor <zhang.san@tax.example.cn>;\r\n"
        b"\tWed, 01 May 2024 10:00:00 +0800\r\n"
    )


def test_hostile_helo_goes_into_a_comment():
    h = received_header(
        helo="evil) (by fake\r\nX-Injected: yes",
        client_ip="2001:db8::5",
        client_rdns=None,
        by_host="mx.tax.example.cn",
        protocol="ESMTP",
        when=WHEN,
    )
    text = h.decode()
    assert text.startswith("Received: from [IPv6:2001:db8::5] (unknown [IPv6:2001:db8::5] helo=evil by fake X-Injected: yes)")
    assert text.count("\r\n") == 3 and "\r\nX-Injected" not in text
    assert text.count("(") == text.count(")")


def test_unsafe_recipient_and_id_dropped():
    h = received_header(
        helo="[192.0.2.5]", client_ip="192.0.2.5", client_rdns="bad rdns!", by_host="mx.example",
        protocol="SMTP", when=WHEN, queue_id="bad id", recipient="a@b>\r\nX: y",
    ).decode()
    assert h.startswith("Received: from [192.0.2.5] (unknown [192.0.2.5])")
    assert " id " not in h and "for <" not in h


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"esmtp": False, "tls": False, "authenticated": False}, "SMTP"),
        ({"esmtp": True, "tls": False, "authenticated": False}, "ESMTP"),
        ({"esmtp": True, "tls": True, "authenticated": False}, "ESMTPS"),
        ({"esmtp": True, "tls": False, "authenticated": True}, "ESMTPA"),
        ({"esmtp": True, "tls": True, "authenticated": True}, "ESMTPSA"),
        ({"esmtp": True, "tls": True, "authenticated": True, "smtputf8": True}, "UTF8SMTPSA"),
    ],
)
def test_with_protocol(flags, expected):
    assert with_protocol(**flags) == expected


def test_requires_aware_time_and_valid_names():
    with pytest.raises(ValueError):
        received_header(helo="x", client_ip="192.0.2.1", client_rdns=None, by_host="mx.example",
                        protocol="ESMTP", when=datetime(2024, 5, 1))
    with pytest.raises(ValueError):
        received_header(helo="x", client_ip="192.0.2.1", client_rdns=None, by_host="bad host",
                        protocol="ESMTP", when=WHEN)
    with pytest.raises(ValueError):
        received_header(helo="x", client_ip="192.0.2.1", client_rdns=None, by_host="mx.example",
                        protocol="ESMTP\r\nX: y", when=WHEN)
