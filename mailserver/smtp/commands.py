"""Pure SMTP command arguments: MAIL/RCPT paths and parameters, AUTH PLAIN responses, the transaction state.

No I/O here: the aiosmtpd adapter (handler.py) hands in the text after the
verb and gets back values or the `Reply` to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from delivery.envelope import (
    AUTH_FAILED, BAD_ARGUMENTS, MESSAGE_TOO_BIG, PARAMETER_NOT_IMPLEMENTED, SYNTAX_ERROR, Address, Reply,
)
from delivery.policy import PolicyError, parse_path

NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")  # RFC 5321 §3.3
VRFY_REPLY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")  # §3.5.3
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
ALREADY_TLS = Reply(503, "5.5.1", "TLS already active")
ALREADY_AUTH = Reply(503, "5.5.1", "Already authenticated")


@dataclass
class Transaction:
    """One MAIL ... DATA exchange (RFC 5321 §3.3)."""

    queue_id: str
    mail_from: Address
    smtputf8: bool
    body_8bit: bool
    size: int | None
    started: float
    rcpts: list[str] = field(default_factory=list)
    refused: int = 0
    seen: set[str] = field(default_factory=set)  # duplicate check in O(1) per RCPT

    @property
    def reverse_path(self) -> str:
        return str(self.mail_from)


@dataclass(frozen=True)
class MailArgs:
    mail_from: Address
    smtputf8: bool
    body_8bit: bool
    size: int | None


def split_path(rest: str) -> tuple[str, str]:
    """Split `<path> params` at the closing bracket of the path (quoted strings may hold '>')."""
    rest = rest.lstrip(" ")
    if not rest.startswith("<"):
        head, _, tail = rest.partition(" ")
        return head, tail
    quoted = escaped = False
    for i, c in enumerate(rest):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            tail = rest[i + 1:]
            if tail and not tail.startswith(" "):
                return rest, ""  # junk glued to the path: the path parser refuses it (501 5.1.3)
            return rest[: i + 1], tail
    return rest, ""


def parse_params(text: str) -> dict[str, str | bool] | None:
    """ESMTP parameters `KEY[=VALUE]` (RFC 5321 §4.1.2 esmtp-param); None if malformed."""
    out: dict[str, str | bool] = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if not key or not key.replace("-", "").isalnum() or (eq and not value):
            return None
        out[key.upper()] = value if eq else True
    return out


def parse_mail(arg: str | None, *, extended: bool, max_size: int) -> MailArgs | Reply:
    """`MAIL FROM:<path> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]` (RFC 5321 §4.1.1.2)."""
    if not arg or arg[:5].upper() != "FROM:":
        return SYNTAX_ERROR.with_text("Syntax: MAIL FROM:<address>")
    path, rest = split_path(arg[5:])
    params = parse_params(rest)
    if params is None or (params and not extended):
        return BAD_ARGUMENTS
    smtputf8 = params.pop("SMTPUTF8", False) is True  # RFC 6531 §3.4
    body = params.pop("BODY", "7BIT")  # RFC 6152 §2
    size_text = params.pop("SIZE", None)  # RFC 1870 §6
    if params:
        return PARAMETER_NOT_IMPLEMENTED
    if body not in ("7BIT", "8BITMIME") or (size_text is not None and (
            not isinstance(size_text, str) or not size_text.isdigit())):
        return BAD_ARGUMENTS
    size = int(size_text) if size_text else None
    if size is not None and size > max_size:
        return MESSAGE_TOO_BIG  # RFC 1870 §6: 552 at MAIL
    try:
        addr = parse_path(path, smtputf8, reverse=True)
    except PolicyError as exc:
        return exc.reply
    return MailArgs(addr, smtputf8, body == "8BITMIME", size)


def parse_rcpt(arg: str | None) -> str | Reply:
    """`RCPT TO:<path>`: the path text; we advertise no RCPT parameters (no DSN extension)."""
    if not arg or arg[:3].upper() != "TO:":
        return SYNTAX_ERROR.with_text("Syntax: RCPT TO:<address>")
    path, rest = split_path(arg[3:])
    params = parse_params(rest)
    if params is None:
        return BAD_ARGUMENTS
    if params:
        return PARAMETER_NOT_IMPLEMENTED
    return path


def plain_credentials(blob: bytes) -> tuple[str, str] | Reply:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd; no authorising as someone else."""
    parts = blob.split(b"\0")
    if len(parts) != 3:
        return AUTH_FAILED
    try:
        authz, user, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return SYNTAX_ERROR.with_text("Cannot decode the response")
    if authz and authz.lower() != user.lower():
        return AUTH_FAILED
    return user, password
