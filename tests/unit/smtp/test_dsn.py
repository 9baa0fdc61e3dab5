"""DSN bounces (RFC 3464) parsed back with the stdlib email parser."""

from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email import policy as email_policy

import pytest

from delivery.dsn import (
    DsnError,
    RecipientStatus,
    bounce_envelope,
    build_delay_warning,
    build_dsn,
    is_bounce,
    wants_notification,
)

TZ = timezone(timedelta(hours=8))
ARRIVAL = datetime(2024, 5, 1, 9, 0, tzinfo=TZ)
NOW = datetime(2024, 5, 6, 9, 0, tzinfo=TZ)
ORIGINAL = (
    b"From: Zhang San <zhang.san@tax.example.cn>\r\n"
    b"To: li.si@remote.example\r\n"
    b"Subject: =?utf-8?b?5YWz5LqO57qz56iO55Sz5oql?=\r\n"
    b"Message-ID: <orig-1@tax.example.cn>\r\n"
    b"\r\n"
    b"Body text.\r\n"
)
FAILED = RecipientStatus(
    final_recipient="li.si@remote.example",
    action="failed",
    status="5.1.1",
    diagnostic="550 5.1.1 <li.si@remote.example>: Recipient address rejected\r\nX-Evil: 1",
    remote_mta="mx.remote.example",
    last_attempt=NOW,
    orcpt="rfc822;li.si@remote.example",
)


def _build(**kw):
    args = dict(
        reporting_mta="mail.tax.example.cn",
        original_sender="zhang.san@tax.example.cn",
        original_message=ORIGINAL,
        recipients=[FAILED],
        arrival_date=ARRIVAL,
        now=NOW,
    )
    args.update(kw)
    return build_dsn(**args)


def _parse(raw: bytes):
    return message_from_bytes(raw, policy=email_policy.default)


def test_structure_and_fields():
    raw = _build(envelope_id="ENV-42")
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = _parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"] == "zhang.san@tax.example.cn"
    assert "MAILER-DAEMON@mail.tax.example.cn" in msg["From"]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<orig-1@tax.example.cn>"
    assert "退信" in msg["Subject"] and "Undelivered" in msg["Subject"]

    human, status, original = msg.get_payload()
    assert human.get_content_type() == "text/plain"
    assert human.get_content_charset() == "utf-8"
    text = human.get_content()
    assert text.index("未能投递") < text.index("could not be delivered")  # Chinese first
    assert "收件人地址不存在" in text and "does not exist" in text
    assert "关于纳税申报" in text  # the decoded original Subject is quoted
    assert "li.si@remote.example" in text

    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mail.tax.example.cn"
    assert per_message["Original-Envelope-Id"] == "ENV-42"
    assert per_message["Arrival-Date"] == "Wed, 01 May 2024 09:00:00 +0800"
    assert per_recipient["Final-Recipient"] == "rfc822; li.si@remote.example"
    assert per_recipient["Original-Recipient"] == "rfc822;li.si@remote.example"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.remote.example"
    assert per_recipient["Diagnostic-Code"].startswith("smtp; 550 5.1.1 ")
    assert "\n" not in per_recipient["Diagnostic-Code"] and per_recipient["X-Evil"] is None
    assert per_recipient["Last-Attempt-Date"] == "Mon, 06 May 2024 09:00:00 +0800"
    assert per_recipient["Will-Retry-Until"] is None

    assert original.get_content_type() == "text/rfc822-headers"
    assert "Message-ID: <orig-1@tax.example.cn>" in original.get_content()
    assert "Body text." not in original.get_content()


def test_return_full_message():
    msg = _parse(_build(return_full=True))
    original = msg.get_payload()[2]
    assert original.get_content_type() == "message/rfc822"
    inner = original.get_payload()[0]
    assert inner["Message-ID"] == "<orig-1@tax.example.cn>"
    assert inner.get_content().strip() == "Body text."


def test_full_message_falls_back_to_headers_when_too_big_or_8bit():
    msg = _parse(_build(return_full=True, full_limit=10))
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
    eight_bit = ORIGINAL.replace(b"Body text.", "正文".encode())
    msg = _parse(_build(return_full=True, original_message=eight_bit))
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_utf8_headers_of_original_are_base64():
    original = "From: 张三 <zhang.san@tax.example.cn>\r\nSubject: 通知\r\n\r\nx\r\n".encode()
    raw = _build(original_message=original)
    assert raw.isascii()
    part = _parse(raw).get_payload()[2]
    assert part["Content-Transfer-Encoding"] == "base64"
    assert "张三" in part.get_content()


def test_delay_warning():
    delayed = RecipientStatus(
        final_recipient="li.si@remote.example",
        action="delayed",
        status="4.4.1",
        diagnostic="connection timed out",
        remote_mta="mx.remote.example",
        last_attempt=ARRIVAL + timedelta(hours=4),
        will_retry_until=ARRIVAL + timedelta(days=5),
    )
    raw = build_delay_warning(
        reporting_mta="mail.tax.example.cn",
        original_sender="zhang.san@tax.example.cn",
        original_message=ORIGINAL,
        recipients=[delayed],
        arrival_date=ARRIVAL,
        now=ARRIVAL + timedelta(hours=4),
    )
    msg = _parse(raw)
    assert "延迟" in msg["Subject"] and "Delayed" in msg["Subject"]
    human, status, _ = msg.get_payload()
    text = human.get_content()
    assert text.index("暂时未能投递") < text.index("has not yet been delivered")
    assert "2024-05-06 09:00 (UTC+08:00)" in text and "无需重新发送" in text
    rcpt = status.get_payload()[1]
    assert rcpt["Action"] == "delayed" and rcpt["Status"] == "4.4.1"
    assert rcpt["Will-Retry-Until"] == "Mon, 06 May 2024 09:00:00 +0800"
    with pytest.raises(DsnError):
        build_delay_warning(
            reporting_mta="mail.tax.example.cn", original_sender="zhang.san@tax.example.cn",
            original_message=ORIGINAL, recipients=[FAILED], arrival_date=ARRIVAL, now=NOW,
        )


def test_deterministic():
    assert _build() == _build()


def test_internationalized_recipient_uses_utf8_address_type():
    r = RecipientStatus(final_recipient="李四+a@例子.测试", action="failed", status="5.1.1")
    rcpt = _parse(_build(recipients=[r])).get_payload()[1].get_payload()[1]
    assert rcpt["Final-Recipient"] == "utf-8; \\x{674E}\\x{56DB}\\x{2B}a@\\x{4F8B}\\x{5B50}.\\x{6D4B}\\x{8BD5}"


@pytest.mark.parametrize("sender", ["", "<>", "MAILER-DAEMON@remote.example", "<mailer-daemon@x.test>"])
def test_never_bounce_a_bounce(sender):
    assert is_bounce(sender)
    with pytest.raises(DsnError):
        _build(original_sender=sender)
    with pytest.raises(DsnError):
        bounce_envelope(sender)


def test_bounce_envelope():
    env = bounce_envelope("zhang.san@tax.example.cn")
    assert env.mail_from == "" and env.rcpt_to == ("zhang.san@tax.example.cn",)
    assert not is_bounce("zhang.san@tax.example.cn")


def test_status_must_match_action():
    with pytest.raises(DsnError):
        RecipientStatus(final_recipient="a@x.test", action="failed", status="4.4.1")
    with pytest.raises(DsnError):
        RecipientStatus(final_recipient="a@x.test", action="delayed", status="5.1.1")
    with pytest.raises(DsnError):
        RecipientStatus(final_recipient="a@x.test", action="failed", status="5.1")


@pytest.mark.parametrize(
    "notify, action, expected",
    [
        (frozenset(), "failed", True),
        (frozenset(), "delayed", True),
        (frozenset(), "delivered", False),
        (frozenset({"NEVER"}), "failed", False),
        (frozenset({"SUCCESS"}), "failed", False),
        (frozenset({"failure", "delay"}), "delayed", True),
        (frozenset({"SUCCESS"}), "delivered", True),
    ],
)
def test_wants_notification(notify, action, expected):
    assert wants_notification(notify, action) is expected


def test_long_diagnostic_stays_plain_text():
    r = RecipientStatus(final_recipient="a@x.test", action="failed", status="5.7.1", diagnostic="550 " + "y" * 300 + " end")
    raw = _build(recipients=[r])
    assert b"=?utf-8?" not in raw.split(b"message/delivery-status", 1)[1].split(b"text/rfc822-headers", 1)[0]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    rcpt = _parse(raw).get_payload()[1].get_payload()[1]
    assert rcpt["Diagnostic-Code"] == "smtp; 550 " + "y" * 300 + " end"
