"""Delivery status notifications (RFC 3464): failure bounces and delay warnings, in Chinese and English.

Implementation notes
- `build_dsn` returns the whole message as CRLF bytes; the caller submits it
  with the envelope from `bounce_envelope` (null reverse-path, RFC 5321 §6.1).
- Never bounce a bounce: `is_bounce` is checked before anything is built and
  `DsnError` is raised for a null (or MAILER-DAEMON) original sender
  (RFC 5321 §4.5.5, RFC 3464 §2).
- Output is deterministic for the same inputs (Message-ID and MIME boundary
  are derived from a hash), so a retried bounce job produces the same bytes.
- The DSN is 7-bit clean unless the original sender's address is itself
  internationalized (then headers are UTF-8, RFC 6532): the human part is
  base64 or quoted-printable, and the original is returned whole (message/rfc822) only
  when asked (RET=FULL, RFC 3461 §4.3), 7-bit and under `full_limit`;
  otherwise its header block goes back as text/rfc822-headers (RFC 6522 §4).
- Text from remote servers (diagnostics, host names) and from the original
  message (Subject) is reduced to printable characters and truncated before
  it is written anywhere.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.errors import HeaderParseError
from email.message import EmailMessage, Message, MIMEPart
from email.parser import HeaderParser
from email.utils import format_datetime
from typing import Literal

from delivery.envelope import Envelope

__all__ = [
    "DsnError",
    "RecipientStatus",
    "bounce_envelope",
    "build_dsn",
    "build_delay_warning",
    "is_bounce",
    "wants_notification",
]

FULL_RETURN_LIMIT = 256 * 1024  # bytes of original message returned whole under RET=FULL
MAX_DIAGNOSTIC = 900  # characters of remote diagnostic text kept
MAX_SUBJECT = 120  # characters of the original Subject quoted in the human text
# CRLF, 78-column folding, RFC 2047 for non-ASCII headers; the delivery-status
# fields we fold ourselves are written as they are (refold_source="none").
_POLICY = email_policy.SMTP.clone(refold_source="none")
_POLICY_UTF8 = email_policy.SMTPUTF8.clone(refold_source="none")

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
_STATUS_RE = re.compile(r"\A([245])\.\d{1,3}\.\d{1,3}\Z")
_HOST_RE = re.compile(r"\A[A-Za-z0-9._:\[\]-]{1,255}\Z")


class DsnError(ValueError):
    """A DSN was requested that must not be sent or cannot be formed."""


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """Per-recipient fields of a DSN (RFC 3464 §2.3)."""

    final_recipient: str
    action: Action
    status: str  # RFC 3463 enhanced code, e.g. "5.1.1"
    diagnostic: str | None = None  # the remote SMTP reply, e.g. "550 5.1.1 No such user"
    remote_mta: str | None = None  # host name of the server that answered
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None  # only meaningful for Action: delayed
    orcpt: str | None = None  # ORCPT parameter as given ("rfc822;user@example.org")

    def __post_init__(self) -> None:
        m = _STATUS_RE.match(self.status)
        if m is None:
            raise DsnError(f"bad status code {self.status!r}")
        # RFC 3464 §2.3.3/§2.3.4: failed goes with 5.x.x, delayed with 4.x.x.
        expected = {"failed": "5", "delayed": "4"}.get(self.action)
        if expected is not None and m.group(1) != expected:
            raise DsnError(f"action {self.action} does not match status {self.status}")
        if any(c in self.final_recipient for c in "\r\n\x00") or not self.final_recipient:
            raise DsnError("bad final recipient")


# ---------------------------------------------------------------------------
# Guards
# ---------------------------------------------------------------------------


def is_bounce(mail_from: str) -> bool:
    """True when a message with this reverse-path must never be answered by a DSN.

    The null path `<>` is what DSNs and other notifications use (RFC 5321 §4.5.5).
    MAILER-DAEMON senders are included as well: some broken MTAs bounce with a
    non-null path, and answering them is how bounce loops start.
    """
    path = mail_from.strip()
    if path.startswith("<") and path.endswith(">"):
        path = path[1:-1]
    if path == "":
        return True
    local = path.rpartition("@")[0] if "@" in path else path
    return local.strip('"').lower() == "mailer-daemon"


def wants_notification(notify: frozenset[str] | set[str], action: Action) -> bool:
    """RFC 3461 §4.1 NOTIFY: should a DSN with this action go to the sender?"""
    keywords = {k.upper() for k in notify}
    if "NEVER" in keywords:
        return False
    if not keywords:
        # Default: failures always; delays at the MTA's discretion (we send them).
        return action in ("failed", "delayed")
    wanted = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS", "relayed": "SUCCESS", "expanded": "SUCCESS"}
    return wanted[action] in keywords


def bounce_envelope(original_sender: str) -> Envelope:
    """The envelope a DSN travels in: null reverse-path to the original sender (RFC 5321 §6.1)."""
    if is_bounce(original_sender):
        raise DsnError("never bounce a bounce")
    return Envelope(mail_from="", rcpt_to=(original_sender,))


# ---------------------------------------------------------------------------
# Sanitising
# ---------------------------------------------------------------------------


def _printable_ascii(text: str, limit: int) -> str:
    """Collapse whitespace, replace non-printable and non-ASCII characters, truncate."""
    flat = " ".join(text.split())
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in flat)
    return clean[:limit]


def _printable(text: str, limit: int) -> str:
    """Like `_printable_ascii` but keeps printable Unicode (for the human-readable part)."""
    flat = " ".join(text.split())
    clean = "".join(c for c in flat if unicodedata.category(c)[0] not in "CZ" or c == " ")
    return clean[:limit] + ("…" if len(clean) > limit else "")


def _host(text: str | None) -> str | None:
    if not text:
        return None
    host = text.strip().rstrip(".")
    return host if _HOST_RE.match(host) else None


def _xtext_utf8(address: str) -> str:
    """RFC 6533 §3 utf-8-addr-xtext: non-ASCII, "+", "=" and "\\" as \\x{HEX}."""
    out = []
    for c in address:
        o = ord(c)
        out.append(c if 0x21 <= o <= 0x7E and c not in "+=\\" else f"\\x{{{o:X}}}")
    return "".join(out)


def _address_field(address: str) -> str:
    # RFC 3464 §2.3.2 address-type "rfc822"; RFC 6533 §3 "utf-8" for internationalized addresses.
    if address.isascii() and all(32 < ord(c) < 127 for c in address):
        return f"rfc822; {address}"
    return f"utf-8; {_xtext_utf8(address)}"


# ---------------------------------------------------------------------------
# Human-readable part
# ---------------------------------------------------------------------------

# RFC 3463 codes we explain in words; the rest fall back to their class.
_REASONS: dict[str, tuple[str, str]] = {
    "5.1.1": ("收件人地址不存在。", "The recipient address does not exist."),
    "5.1.2": ("收件人的域名不存在或不接收邮件。", "The recipient's domain does not exist or does not accept mail."),
    "5.1.10": ("收件人的域名声明不接收邮件。", "The recipient's domain declares that it accepts no mail."),
    "4.2.2": ("收件人邮箱已满。", "The recipient's mailbox is full."),
    "5.2.2": ("收件人邮箱已满。", "The recipient's mailbox is full."),
    "5.3.4": ("邮件过大，对方系统拒收。", "The message is too large for the receiving system."),
    "4.4.1": ("对方邮件服务器没有响应。", "The receiving mail server did not answer."),
    "4.4.2": ("与对方邮件服务器的连接中断。", "The connection to the receiving mail server was lost."),
    "5.4.4": ("找不到收件人域名的邮件服务器。", "No mail server could be found for the recipient's domain."),
    "4.4.7": ("邮件在规定时间内未能送达。", "The message could not be delivered in the time allowed."),
    "5.4.7": ("邮件在规定时间内未能送达。", "The message could not be delivered in the time allowed."),
    "4.7.4": ("对方邮件服务器不支持加密传输（TLS），而本路由要求加密。",
              "The receiving mail server does not offer TLS, which this route requires."),
    "5.7.1": ("对方系统出于安全策略拒收了这封邮件。", "The receiving system refused the message for policy reasons."),
}
_CLASS_REASONS = {
    "5": ("对方邮件系统拒收了这封邮件。", "The receiving mail system refused the message."),
    "4": ("对方邮件系统暂时无法接收这封邮件。", "The receiving mail system could not accept the message for now."),
    "2": ("邮件已投递。", "The message was delivered."),
}


def _reason(status: str) -> tuple[str, str]:
    return _REASONS.get(status) or _CLASS_REASONS[status[0]]


def _human_time(dt: datetime) -> str:
    offset = dt.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hh, mm = divmod(abs(minutes), 60)
    return f"{dt:%Y-%m-%d %H:%M} (UTC{sign}{hh:02d}:{mm:02d})"


def _recipient_lines(r: RecipientStatus, zh: bool) -> list[str]:
    reason_zh, reason_en = _reason(r.status)
    lines = [f"  {r.final_recipient}"]
    if zh:
        lines.append(f"    原因：{reason_zh}（{r.status}）")
        if r.diagnostic:
            lines.append(f"    对方服务器答复：{_printable(r.diagnostic, 300)}")
    else:
        lines.append(f"    Reason: {reason_en} ({r.status})")
        if r.diagnostic:
            lines.append(f"    The remote server said: {_printable(r.diagnostic, 300)}")
    return lines


def _human_text(
    reporting_mta: str,
    subject: str,
    arrival: datetime,
    failed: Sequence[RecipientStatus],
    delayed: Sequence[RecipientStatus],
) -> str:
    when = _human_time(arrival)
    subj_zh = f"“{subject}”" if subject else ""
    subj_en = f' "{subject}"' if subject else ""
    zh = [f"这是 {reporting_mta} 邮件系统自动发出的通知，请勿直接回复。", ""]
    en = [f"This is an automatic notice from the mail system at {reporting_mta}. Please do not reply to it.", ""]

    def section(recipients, zh_head: str, en_head: str) -> None:
        zh.extend([zh_head, ""])
        en.extend([en_head, ""])
        for r in recipients:
            zh.extend(_recipient_lines(r, True))
            en.extend(_recipient_lines(r, False))
        zh.append("")
        en.append("")

    if failed:
        section(failed, f"您于 {when} 发出的邮件{subj_zh}未能投递给以下收件人，系统已停止投递：",
                f"Your message{subj_en} sent {when} could not be delivered to these recipients; delivery has stopped:")
    if delayed:
        until = max((r.will_retry_until for r in delayed if r.will_retry_until), default=None)
        section(delayed, f"您于 {when} 发出的邮件{subj_zh}暂时未能投递给以下收件人：",
                f"Your message{subj_en} sent {when} has not yet been delivered to these recipients:")
        if until is not None:
            zh.append(f"系统将继续尝试投递，直至 {_human_time(until)}。届时仍未送达，您会收到退信通知。")
            en.append(f"The system will keep trying until {_human_time(until)}. If it still fails, you will be told.")
        zh.append("您无需重新发送这封邮件。")
        en.append("You do not need to send the message again.")
        zh.append("")
        en.append("")
    zh.append("如需帮助，请联系本单位邮件管理员，并附上本通知。")
    en.append("If you need help, contact your mail administrator and include this notice.")
    return "\n".join([*zh, "", "-" * 70, "", *en, ""])


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def _split_original(original: bytes) -> tuple[bytes, bytes]:
    """CRLF-normalised (header block, whole message)."""
    normalised = re.sub(rb"\r?\n", b"\r\n", original)
    end = normalised.find(b"\r\n\r\n")
    headers = normalised if end < 0 else normalised[: end + 2]
    return headers, normalised


def _fold(name: str, value: str) -> str:
    """Fold a field value at spaces to 78 columns (RFC 5322 §2.2.3); words are never split."""
    lines: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) > 78 and current != f"{name}:":
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return "\r\n".join(lines)[len(name) + 2 :]


def _block(fields: list[tuple[str, str]]) -> Message:
    """One header block of message/delivery-status, written exactly as given."""
    block = Message()  # compat32: values are kept as written, not re-folded
    for name, value in fields:
        block[name] = _fold(name, value)
    return block


def _status_part(
    reporting_mta: str,
    arrival: datetime,
    envelope_id: str | None,
    recipients: Sequence[RecipientStatus],
) -> MIMEPart:
    part = MIMEPart(policy=_POLICY)
    part["Content-Type"] = "message/delivery-status"
    # RFC 3464 §2.2: per-message fields.
    per_message = []
    if envelope_id:
        per_message.append(("Original-Envelope-Id", _printable_ascii(envelope_id, 100)))  # §2.2.1
    per_message.append(("Reporting-MTA", f"dns; {reporting_mta}"))  # §2.2.2
    per_message.append(("Arrival-Date", format_datetime(arrival)))  # §2.2.5
    blocks = [_block(per_message)]
    # RFC 3464 §2.3: per-recipient fields.
    for r in recipients:
        fields = []
        if r.orcpt and ";" in r.orcpt:
            fields.append(("Original-Recipient", _printable_ascii(r.orcpt, 300)))  # §2.3.1
        fields.append(("Final-Recipient", _address_field(r.final_recipient)))  # §2.3.2
        fields.append(("Action", r.action))  # §2.3.3
        fields.append(("Status", r.status))  # §2.3.4
        remote = _host(r.remote_mta)
        if remote:
            fields.append(("Remote-MTA", f"dns; {remote}"))  # §2.3.5
        if r.diagnostic:
            fields.append(("Diagnostic-Code", f"smtp; {_printable_ascii(r.diagnostic, MAX_DIAGNOSTIC)}"))  # §2.3.6
        if r.last_attempt is not None:
            fields.append(("Last-Attempt-Date", format_datetime(r.last_attempt)))  # §2.3.7
        if r.action == "delayed" and r.will_retry_until is not None:
            fields.append(("Will-Retry-Until", format_datetime(r.will_retry_until)))  # §2.3.9
        blocks.append(_block(fields))
    part.set_payload(blocks)
    return part


def _original_part(headers: bytes, whole: bytes, return_full: bool, full_limit: int) -> MIMEPart:
    part = MIMEPart(policy=_POLICY)
    if return_full and len(whole) <= full_limit and whole.isascii():
        # RFC 3462/6522 §3: the third part may be the whole message; it stays 7-bit.
        part["Content-Type"] = "message/rfc822"
        part.set_payload(whole.decode("ascii"))
        return part
    text = headers.decode("utf-8", errors="replace").replace("\r\n", "\n")
    seven_bit = text.isascii() and all(len(line) <= 998 for line in text.split("\n"))
    # RFC 6522 §4 text/rfc822-headers; base64 when the headers are not 7-bit clean.
    part.set_content(text, subtype="rfc822-headers", charset="utf-8", cte="7bit" if seven_bit else "base64")
    return part


def build_dsn(
    *,
    reporting_mta: str,
    original_sender: str,
    original_message: bytes,
    recipients: Sequence[RecipientStatus],
    arrival_date: datetime,
    now: datetime,
    envelope_id: str | None = None,
    return_full: bool = False,
    full_limit: int = FULL_RETURN_LIMIT,
    from_address: str | None = None,
) -> bytes:
    """Build a multipart/report DSN (RFC 3464, RFC 6522) to `original_sender`; CRLF bytes ready to submit."""
    if is_bounce(original_sender):
        raise DsnError("never bounce a bounce")  # RFC 5321 §4.5.5
    if not recipients:
        raise DsnError("a DSN needs at least one recipient")
    mta = _host(reporting_mta)
    if mta is None:
        raise DsnError("bad reporting MTA name")
    if any(c in original_sender for c in "\r\n\x00<>"):
        raise DsnError("bad original sender")

    headers, whole = _split_original(original_message)
    try:
        original = HeaderParser(policy=email_policy.default).parsestr(headers.decode("utf-8", errors="replace"))
        subject = _printable(str(original.get("Subject", "")), MAX_SUBJECT)
        original_id = str(original.get("Message-ID", "")).strip()
    except (HeaderParseError, ValueError, TypeError, IndexError, AttributeError):
        subject, original_id = "", ""

    failed = [r for r in recipients if r.action == "failed"]
    delayed = [r for r in recipients if r.action == "delayed"]
    text = _human_text(mta, subject, arrival_date, failed, delayed)

    digest = hashlib.sha256()
    for piece in (whole, original_sender.encode(), now.isoformat().encode(), repr(recipients).encode()):
        digest.update(piece)
        digest.update(b"\0")
    token = digest.hexdigest()

    msg = EmailMessage(policy=_POLICY)
    msg["From"] = f'"邮件投递系统 Mail Delivery System" <{from_address or "MAILER-DAEMON@" + mta}>'
    msg["To"] = original_sender
    if failed:
        msg["Subject"] = "退信：邮件未能投递 / Undelivered Mail Returned to Sender"
    else:
        msg["Subject"] = "延迟通知：邮件尚未送达 / Delivery Delayed (still trying)"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{token[:32]}.dsn@{mta}>"
    if re.fullmatch(r"<[^<>\s]{1,900}>", original_id):
        msg["In-Reply-To"] = original_id
        msg["References"] = original_id
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5.1: no auto-replies to this
    msg["MIME-Version"] = "1.0"

    human = MIMEPart(policy=_POLICY)
    human.set_content(text, charset="utf-8")
    parts = [human, _status_part(mta, arrival_date, envelope_id, recipients)]
    parts.append(_original_part(headers, whole, return_full, full_limit))

    boundary = f"=_postroom_dsn_{token[32:56]}"
    while boundary.encode() in whole:
        boundary += "_"
    # RFC 6522 §3: multipart/report with report-type=delivery-status (RFC 3464 §2).
    msg["Content-Type"] = f'multipart/report; report-type=delivery-status; boundary="{boundary}"'
    msg.set_payload(parts)
    # RFC 6532: an internationalized sender address can only be written as UTF-8.
    return msg.as_bytes(policy=_POLICY if original_sender.isascii() else _POLICY_UTF8)


def build_delay_warning(
    *,
    reporting_mta: str,
    original_sender: str,
    original_message: bytes,
    recipients: Sequence[RecipientStatus],
    arrival_date: datetime,
    now: datetime,
    envelope_id: str | None = None,
    from_address: str | None = None,
) -> bytes:
    """The "delayed" variant: every recipient must have Action: delayed; only headers are returned."""
    if any(r.action != "delayed" for r in recipients):
        raise DsnError("a delay warning lists only delayed recipients")
    return build_dsn(
        reporting_mta=reporting_mta,
        original_sender=original_sender,
        original_message=original_message,
        recipients=recipients,
        arrival_date=arrival_date,
        now=now,
        envelope_id=envelope_id,
        return_full=False,
        from_address=from_address,
    )
