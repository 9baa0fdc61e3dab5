"""Test messages for the webmail: a GBK-encoded Chinese mail with a Chinese-named attachment, hostile HTML mail."""

from __future__ import annotations

from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

ATTACHMENT = "季度报告（第三季度）.pdf"
ATTACHMENT_DATA = b"%PDF-1.4\n" + bytes(range(256)) * 4


def gbk_mail(to: str = "alice@city.test") -> bytes:
    """Subject, sender name and body in GBK; the attachment name in RFC 2231 GBK (as Outlook and Foxmail send)."""
    m = MIMEMultipart()
    m["From"] = f"{Header('王芳', 'gbk').encode()} <wang@district.test>"
    m["To"] = to
    m["Subject"] = Header("关于第三季度报告的通知", "gbk").encode()
    m["Date"] = "Mon, 02 Nov 2026 10:00:00 +0800"
    m["Message-ID"] = "<gbk-1@city.test>"
    m.attach(MIMEText("各位同事：\n请查收附件。<script>alert(1)</script>\n", "plain", "gbk"))
    att = MIMEApplication(ATTACHMENT_DATA, "pdf")
    att.add_header("Content-Disposition", "attachment", filename=("gbk", "", ATTACHMENT))
    m.attach(att)
    return m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def html_mail(html: str, *, subject: str = "HTML newsletter", to: str = "alice@city.test",
              text: str | None = "plain version") -> bytes:
    """multipart/alternative with the given HTML (and a plain-text part unless text is None)."""
    if text is None:
        m = MIMEText(html, "html", "utf-8")
    else:
        m = MIMEMultipart("alternative")
        m.attach(MIMEText(text, "plain", "utf-8"))
        m.attach(MIMEText(html, "html", "utf-8"))
    m["From"] = "news@outside.test"
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = "Tue, 03 Nov 2026 09:00:00 +0800"
    return m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def plain_mail(subject: str, *, to: str = "alice@city.test", date: str = "Mon, 02 Nov 2026 10:00:00 +0800") -> bytes:
    return (f"From: carol@city.test\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n").encode()
