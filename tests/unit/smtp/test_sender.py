"""Sender authorisation: envelope MAIL FROM and the From:/Sender: header."""

import pytest

from delivery.envelope import Address
from mailserver.smtp.policy import (
    check_header_from,
    check_sender,
    check_unauthenticated_sender,
    parse_path,
    throttle_reply,
)

LOGIN = "zhang.san@tax.example.cn"
ALLOWED = {"office@tax.example.cn", "Notices@Tax.Example.CN"}


def _sender(path):
    return check_sender(parse_path(path, True, reverse=True), login_account=LOGIN, allowed_addresses=ALLOWED)


@pytest.mark.parametrize(
    "path",
    ["<zhang.san@tax.example.cn>", "<Zhang.San@TAX.example.cn>", "<office@tax.example.cn>", "<notices@tax.example.cn.>"],
)
def test_own_and_alias_addresses_allowed(path):
    assert _sender(path) is None


@pytest.mark.parametrize(
    "path",
    [
        "<li.si@tax.example.cn>",  # a colleague
        "<zhang.san@evil.example>",  # same local part elsewhere
        "<zhang.san+x@tax.example.cn>",  # sub-address not listed
        "<>",  # null sender on submission
        "<zhang.san@[192.0.2.1]>",
        '<"zhang.san@tax.example.cn"@evil.example>',
    ],
)
def test_other_addresses_refused(path):
    reply = _sender(path)
    assert reply is not None and (reply.code, reply.enhanced) == (553, "5.7.1")


def test_unauthenticated_may_not_claim_local_domain():
    local = {"tax.example.cn"}
    reply = check_unauthenticated_sender(Address("boss", "tax.example.cn"), local_domains=local)
    assert reply is not None and reply.code == 553
    assert check_unauthenticated_sender(Address("x", "remote.example"), local_domains=local) is None
    assert check_unauthenticated_sender(Address("", ""), local_domains=local) is None


def _msg(*headers: str) -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\nbody\r\n").encode("utf-8")


@pytest.mark.parametrize(
    "headers",
    [
        ("From: Zhang San <zhang.san@tax.example.cn>", "Subject: hi"),
        ("From: =?utf-8?b?5byg5LiJ?= <ZHANG.SAN@tax.example.cn>",),
        ("From: 张三 <office@tax.example.cn>",),  # RFC 6532 UTF-8 display name
        ("From: office@tax.example.cn, notices@tax.example.cn", "Sender: zhang.san@tax.example.cn"),
        ('From: "evil@remote.example" <zhang.san@tax.example.cn>',),  # display names are cosmetic
    ],
)
def test_header_from_allowed(headers):
    assert check_header_from(_msg(*headers), login_account=LOGIN, allowed_addresses=ALLOWED) is None


@pytest.mark.parametrize(
    "headers",
    [
        ("From: boss@tax.example.cn",),
        ("Subject: no from at all",),
        ("From: zhang.san@tax.example.cn", "From: boss@tax.example.cn"),  # two From fields
        ("From: zhang.san@tax.example.cn, boss@tax.example.cn",),  # several mailboxes, no Sender
        ("From: office@tax.example.cn, notices@tax.example.cn", "Sender: boss@tax.example.cn"),
        ("From: zhang.san@tax.example.cn", "Sender: boss@tax.example.cn"),
        ("From: undisclosed:;",),
        ("From: zhang.san@tax.example.cn <boss@remote.example>",),
        ("From: <zhang.san@tax.example.cn",),  # unparseable
        ("From: zhang.san@tax.example.cn.evil.example",),
    ],
)
def test_header_from_refused(headers):
    reply = check_header_from(_msg(*headers), login_account=LOGIN, allowed_addresses=ALLOWED)
    assert reply is not None and reply.code == 550 and reply.enhanced in ("5.7.1", "5.6.0")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # issue 7 point 3: a space before the colon is still a From field to the store and to MUAs
        (b"From : boss@tax.example.cn\r\nFrom: zhang.san@tax.example.cn\r\n\r\nx", "550 5.7.1 More than one"),
        (b"From: zhang.san@tax.example.cn\r\nFROM\t: boss@tax.example.cn\r\n\r\nx", "550 5.7.1 More than one"),
        (b"From: zhang.san@tax.example.cn\r\nfrom: boss@tax.example.cn\r\n\r\nx", "550 5.7.1 More than one"),
        # a bare CR ends a line for some readers
        (b"Subject: a\rFrom: boss@tax.example.cn\r\nFrom: zhang.san@tax.example.cn\r\n\r\nx", "550 5.7.1 More than one"),
        # a From after a line we read as the start of the body
        (b"From: zhang.san@tax.example.cn\r\nnot a field\r\nFrom: boss@tax.example.cn\r\n\r\nx",
         "550 5.7.1 More than one"),
        (b"Subject: a\r\nnot a field\r\nFrom: zhang.san@tax.example.cn\r\n\r\nx", "550 5.6.0 From header"),
        (b"From: zhang.san@tax.example.cn\r\nSender: zhang.san@tax.example.cn\r\nSender : boss@tax.example.cn"
         b"\r\n\r\nx", "550 5.7.1 More than one Sender"),
        (b"From: <zhang.san@tax.example.cn> boss@tax.example.cn\r\n\r\nx", "550 5.6.0 From header"),
        (b"From: \"open <zhang.san@tax.example.cn>\r\n\r\nx", "550 5.6.0 From header"),
        (b"From: zhang.san@tax.example.cn (open\r\n\r\nx", "550 5.6.0 From header"),
        (b"Subject: x\r\n\r\nx", "550 5.6.0 No From"),
        # issue 7 point 5: 15,000 encoded words (210 KB) are refused at once, not parsed for seconds
        (b"From: " + b" ".join([b"=?utf-8?B?5L2g5aW9?="] * 15000) + b" <zhang.san@tax.example.cn>\r\n\r\nx",
         "552 5.3.4 "),
        (b"From: " + b" ".join([b"=?utf-8?B?5L2g?="] * 1500) + b" <zhang.san@tax.example.cn>\r\n\r\nx",
         "554 5.6.0 Too many encoded words"),
        (b"From: zhang.san@tax.example.cn\r\nTo: " + b",".join([b"a@x.cn"] * 2500) + b"\r\n\r\nx",
         "554 5.6.0 Too many addresses"),
        (b"From: zhang.san@tax.example.cn\r\n" + b"X-Pad: y\r\n" * 40000 + b"\r\nx", "552 5.3.4 Message header"),
    ],
)
def test_header_from_refusals_are_exact(message, expected):
    reply = check_header_from(message, login_account=LOGIN, allowed_addresses=ALLOWED)
    assert reply is not None and str(reply).startswith(expected)


def test_header_from_looks_only_at_the_header_block():
    message = b"Subject: x\r\n\r\nFrom: zhang.san@tax.example.cn\r\n"
    assert check_header_from(message, login_account=LOGIN, allowed_addresses=ALLOWED) is not None


def test_header_from_with_bare_lf():
    message = b"From: zhang.san@tax.example.cn\nSubject: x\n\nbody\n"
    assert check_header_from(message, login_account=LOGIN, allowed_addresses=ALLOWED) is None


def test_throttle_reply():
    assert throttle_reply(None) is None
    reply = throttle_reply(12.5)
    assert reply is not None and str(reply).startswith("454 4.7.0 ")
