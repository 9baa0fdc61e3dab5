"""Sample messages as Chinese government mail really looks (GBK, GB2312 words, RFC 2231 names, Big5)."""

from __future__ import annotations

import base64
import quopri


def b64(data: bytes) -> bytes:
    """Base64 in 76-column CRLF lines, as mailers write it."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def word(text: str, charset: str, enc: str = "B") -> bytes:
    """One RFC 2047 encoded word."""
    data = text.encode(charset)
    if enc == "B":
        return b"=?%s?B?%s?=" % (charset.encode(), base64.b64encode(data))
    return b"=?%s?Q?%s?=" % (charset.encode(), quopri.encodestring(data, header=True))


def pct(text: str, charset: str) -> bytes:
    return "".join("%%%02X" % b for b in text.encode(charset)).encode()


GBK_SUBJECT = "关于2024年度个人所得税汇算清缴的通知"
GBK_BODY = "各位同事：\r\n请于三月底前完成个人所得税年度汇算。附件为办理指南。\r\n市税务局办公室\r\n"
GBK_FILENAME = "汇算清缴办理指南（2024版）.doc"


def gbk_message() -> bytes:
    """Foxmail-style: GB2312 word subject, GBK base64 body, GBK RFC 2231 file name in two pieces."""
    name = pct(GBK_FILENAME, "gbk")
    half = len(name) // 2 - (len(name) // 2) % 3    # split on a %XX boundary
    return (
        b"From: " + word("张三", "gbk") + b" <zhangsan@tax.example.gov.cn>\r\n"
        b"To: \"" + word("李四", "gb2312") + b"\" <lisi@tax.example.gov.cn>,\r\n"
        b"\twangwu@tax.example.gov.cn\r\n"
        b"Subject: " + word(GBK_SUBJECT, "gb2312") + b"\r\n"
        b"Date: Mon, 4 Mar 2024 09:15:00 +0800\r\n"
        b"Message-ID: <20240304091500.1@tax.example.gov.cn>\r\n"
        b"X-Mailer: Foxmail 7.2.25\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed;\r\n\tboundary=\"----=_NextPart_001\"\r\n"
        b"\r\n"
        b"This is a multi-part message in MIME format.\r\n"
        b"\r\n"
        b"------=_NextPart_001\r\n"
        b"Content-Type: text/plain; charset=\"GBK\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        + b64(GBK_BODY.encode("gbk")) +
        b"\r\n"
        b"------=_NextPart_001\r\n"
        b"Content-Type: application/msword;\r\n"
        b"\tname=\"" + word(GBK_FILENAME, "gb2312") + b"\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment;\r\n"
        b"\tfilename*0*=GBK''" + name[:half] + b";\r\n"
        b"\tfilename*1*=" + name[half:] + b"\r\n"
        b"\r\n"
        + b64(b"\xd0\xcf\x11\xe0" + bytes(300)) +
        b"\r\n"
        b"------=_NextPart_001--\r\n"
        b"\r\n"
    )


BIG5_SUBJECT = "臺北市政府稅捐稽徵處公告"
BIG5_BODY = "敬啟者：本處訂於下週一起受理申報，請準時辦理。"


def big5_message() -> bytes:
    """Outlook (Taiwan): Big5 QP body, Big5 encoded-word subject, raw 8-bit Big5 display name."""
    return (
        b"From: " + "陳小明".encode("big5") + b" <chen@example.gov.tw>\r\n"
        b"To: office@tax.example.gov.cn\r\n"
        b"Subject: " + word(BIG5_SUBJECT, "big5") + b"\r\n"
        b"Date: Tue, 5 Mar 2024 14:00:00 +0800\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=\"big5\"\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        + quopri.encodestring(BIG5_BODY.encode("big5")).replace(b"\n", b"\r\n") + b"\r\n"
    )


GB18030_TEXT = "㐀䶵 𠀀𪚥 € 税"   # CJK Ext-A, Ext-B (4-byte in GB18030), euro sign


def gb18030_message() -> bytes:
    """GB18030 with four-byte characters; HTML part whose charset is only in a <meta> tag."""
    html = ("<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=gb18030\">"
            "<style>p {color: red}</style><script>var x = '不应出现';</script></head>"
            "<body><p>" + GB18030_TEXT + "</p><p>第二段&amp;结束</p></body></html>")
    return (
        b"From: tester@example.cn\r\n"
        b"Subject: " + word(GB18030_TEXT, "gb18030") + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/html\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n" + b64(html.encode("gb18030"))
    )


def nested_message() -> bytes:
    """multipart/mixed -> (multipart/alternative -> plain, html), PDF attachment."""
    return (
        b"From: Alice <alice@example.com>\r\n"
        b"To: Bob <bob@example.com>\r\n"
        b"Subject: Report\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=outer\r\n"
        b"\r\n"
        b"--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
        b"\r\n"
        b"--inner\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Quarterly figures attached.\r\n"
        b"--inner\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"\r\n"
        b"<p>Quarterly <b>figures</b> attached.</p>\r\n"
        b"--inner--\r\n"
        b"\r\n"
        b"--outer\r\n"
        b"Content-Type: application/pdf; name=report.pdf\r\n"
        b"Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        + b64(b"%PDF-1.4\n" + bytes(range(256)) * 4) +
        b"--outer--\r\n"
    )


def rfc822_message() -> bytes:
    """A forwarded message: text part plus message/rfc822 that is itself multipart."""
    inner = (
        b"From: " + word("王五", "gbk") + b" <wangwu@example.cn>\r\n"
        b"To: zhangsan@example.cn\r\n"
        b"Subject: " + word("原始邮件", "gbk") + b"\r\n"
        b"Date: Fri, 1 Mar 2024 08:00:00 +0800\r\n"
        b"Message-ID: <orig@example.cn>\r\n"
        b"Content-Type: multipart/mixed; boundary=\"in\"\r\n"
        b"\r\n"
        b"--in\r\n"
        b"Content-Type: text/plain; charset=gbk\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        + "这是被转发的正文。".encode("gbk") + b"\r\n"
        b"--in\r\n"
        b"Content-Type: image/png; name=\"chart.png\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        + b64(b"\x89PNG\r\n\x1a\n" + bytes(64)) +
        b"--in--\r\n"
    )
    return (
        b"From: zhangsan@example.cn\r\n"
        b"To: lisi@example.cn\r\n"
        b"Subject: Fwd: " + word("原始邮件", "gbk") + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"fwd\"\r\n"
        b"\r\n"
        b"--fwd\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"See below.\r\n"
        b"--fwd\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"Content-Disposition: attachment\r\n"
        b"\r\n"
        + inner +
        b"--fwd--\r\n"
    )


def simple_message() -> bytes:
    return (
        b"From: a@example.com\r\n"
        b"To: b@example.com\r\n"
        b"Subject: hi\r\n"
        b"\r\n"
        b"hello\r\n"
        b"world\r\n"
    )


WELL_FORMED = {
    "gbk": gbk_message,
    "big5": big5_message,
    "gb18030": gb18030_message,
    "nested": nested_message,
    "rfc822": rfc822_message,
    "simple": simple_message,
}


def reused_boundary_message() -> bytes:
    """Outlook Express for Mac: the multipart/alternative inside multipart/mixed declares the same boundary."""
    return (b"From: Dana <dana@city.test>\r\nTo: alice@city.test\r\nSubject: Minutes\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"B_3201\"\r\n\r\n"
            b"> This message is in MIME format.\r\n\r\n"
            b"--B_3201\r\nContent-Type: multipart/alternative; boundary=\"B_3201\"\r\n\r\n"
            b"--B_3201\r\nContent-Type: text/plain; charset=\"US-ASCII\"\r\n\r\nSee the minutes.\r\n"
            b"--B_3201\r\nContent-Type: text/html; charset=\"US-ASCII\"\r\n\r\n<p>See the minutes.</p>\r\n"
            b"--B_3201--\r\n\r\n"
            b"--B_3201\r\nContent-Type: application/pdf; name=\"minutes.pdf\"\r\n"
            b"Content-Disposition: attachment; filename=\"minutes.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"JVBERi0xLjQK\r\n"
            b"--B_3201--\r\n")
