"""Envelope domain types and the catalogue of SMTP replies that Postroom sends.

Implementation notes
- A `Reply` is the only way a refusal crosses a seam; `str(reply)` is its wire form
  (what aiosmtpd expects a handler to return), multi-line safe (RFC 5321 §4.2.1).
- Reply text is ASCII and generic: details go to the log, never to the client.
  aiosmtpd encodes replies as ASCII unless SMTPUTF8 was negotiated, so a
  non-ASCII text is refused when the Reply is built, not when it is written.
- The enhanced code's class digit must equal the basic code's first digit (RFC 3463 §2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

# RFC 3463 §2: class "." subject "." detail; subject and detail up to three digits.
_ENHANCED_RE = re.compile(r"\A([245])\.(\d{1,3})\.(\d{1,3})\Z")
# Printable ASCII plus SP; a newline separates lines of a multi-line reply.
_TEXT_RE = re.compile(r"\A[\x20-\x7e\n]*\Z")

MAX_REPLY_LINE = 512  # RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with CRLF.


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: basic code, enhanced status code and human text."""

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        m = _ENHANCED_RE.match(self.enhanced)
        if m is None:
            raise ValueError(f"bad enhanced status code: {self.enhanced!r}")
        # RFC 3463 §2: the class of the enhanced code matches the basic code's class.
        if m.group(1) != str(self.code)[0]:
            raise ValueError(f"enhanced code {self.enhanced} does not match {self.code}")
        if not _TEXT_RE.match(self.text):
            raise ValueError("reply text must be printable ASCII")
        prefix = len(f"{self.code} {self.enhanced} ")
        if any(prefix + len(line) + 2 > MAX_REPLY_LINE for line in self.text.split("\n")):
            raise ValueError("reply line too long")

    def __str__(self) -> str:
        # RFC 5321 §4.2.1: every line but the last has a hyphen after the code;
        # RFC 2034 §4: each line repeats the enhanced status code.
        lines = self.text.split("\n")
        head = [f"{self.code}-{self.enhanced} {line}" for line in lines[:-1]]
        return "\r\n".join([*head, f"{self.code} {self.enhanced} {lines[-1]}"])

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_transient(self) -> bool:
        """4yz: the client should try again later (RFC 5321 §4.2.1)."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def with_text(self, text: str) -> Reply:
        return replace(self, text=text)


# ---------------------------------------------------------------------------
# The catalogue. Each constant names one situation; texts stay generic.
# ---------------------------------------------------------------------------

OK = Reply(250, "2.0.0", "OK")
# RFC 3463 §3.2 X.1.5: destination address valid.
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")  # RFC 4954 §6

# RFC 3463 §3.2 X.1.1: bad destination mailbox address.
UNKNOWN_USER = Reply(550, "5.1.1", "Mailbox unavailable")
# RFC 3463 §3.2 X.1.2: bad destination system address.
BAD_DESTINATION = Reply(550, "5.1.2", "Bad destination system address")
# RFC 3463 §3.8 X.7.1: delivery not authorized.
RELAY_DENIED = Reply(554, "5.7.1", "Relaying denied")
ADDRESS_LITERAL_REFUSED = Reply(550, "5.7.1", "Address literals not accepted")
SENDER_NOT_ALLOWED = Reply(553, "5.7.1", "Sender address not allowed for this login")
# After DATA only 250/45x/55x are valid (RFC 5321 §4.3.2), hence 550 not 553.
HEADER_FROM_NOT_ALLOWED = Reply(550, "5.7.1", "From header not allowed for this login")
LOCAL_SENDER_REQUIRES_AUTH = Reply(553, "5.7.1", "Authentication required to send as a local address")
# RFC 4954 §6.
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_THROTTLED = Reply(454, "4.7.0", "Too many failed logins, try again later")
# The account has a second factor: its own password is refused to mail clients (RFC 4954 §6).
APP_PASSWORD_REQUIRED = Reply(535, "5.7.8", "Two-step sign-in is on: log in with an app password "
                                            "(create one in the webmail under App passwords)")

# RFC 3463 §3.4 X.3.4: message too big for system (RFC 1870 §6 uses 552).
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message too big for system")
# RFC 3463 §3.3 X.2.2: mailbox full.
OVER_QUOTA_TEMP = Reply(452, "4.2.2", "Mailbox full, try again later")
OVER_QUOTA_PERM = Reply(552, "5.2.2", "Mailbox full")

# RFC 3463 §3.2 X.1.3 / X.1.7: bad destination / sender address syntax.
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
# RFC 3463 §3.6 X.5.4: invalid command arguments.
BAD_ARGUMENTS = Reply(501, "5.5.4", "Invalid command arguments")
# RFC 6531 §3.5, RFC 3463 X.6.7: a non-ASCII address without SMTPUTF8.
NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")

# RFC 5321 §6.3, RFC 3463 X.4.6 routing loop detected: more Received fields than delivery.received allows.
MAIL_LOOP = Reply(554, "5.4.6", "Too many hops: mail loop detected")
# RFC 3463 §3.4 X.3.0: other or undefined mail system status.
TEMPORARY_FAILURE = Reply(451, "4.3.0", "Temporary failure, try again later")
# RFC 3463 §3.8 X.7.2: the sender may not post to this list.
GROUP_POST_DENIED = Reply(550, "5.7.2", "Not allowed to post to this list")
# RFC 5321 §4.5.3.1.10, RFC 3463 §3.6 X.5.3: too many recipients.
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
# RFC 5321 §4.2.4 / RFC 3463 §3.6 X.5.1 and X.5.2: sequence and syntax errors.
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
SYNTAX_ERROR = Reply(501, "5.5.2", "Syntax error")
# RFC 1870 §6 / RFC 3461 §4: MAIL and RCPT parameters we do not implement.
PARAMETER_NOT_IMPLEMENTED = Reply(555, "5.5.4", "Parameter not recognized or not implemented")
# RFC 5321 §3.8 / RFC 3463 §3.4 X.3.2: system not accepting network messages (shutdown).
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
# RFC 4954 §6, RFC 3463 X.7.11: AUTH only over an encrypted connection.
ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")

# Header limits (mailboxes.headers): RFC 3463 X.3.4 too big, X.6.0 other media error.
HEADER_TOO_BIG = Reply(552, "5.3.4", "Message header too big")
HEADER_FIELD_TOO_LONG = Reply(552, "5.3.4", "Header field too long")
TOO_MANY_ENCODED_WORDS = Reply(554, "5.6.0", "Too many encoded words in one header field")
TOO_MANY_HEADER_ADDRESSES = Reply(554, "5.6.0", "Too many addresses in one header field")
# RFC 5322 §3.6: exactly one From, at most one Sender, read alike by every parser.
SEVERAL_FROM = Reply(550, "5.7.1", "More than one From header field")
NO_FROM = Reply(550, "5.6.0", "No From header field")
BAD_FROM = Reply(550, "5.6.0", "From header field cannot be parsed")
SEVERAL_SENDER = Reply(550, "5.7.1", "More than one Sender header field")
BAD_SENDER = Reply(550, "5.6.0", "Sender header field cannot be parsed")
# Mail from outside that claims one of our domains in From without an aligned, verified DKIM signature.
LOCAL_FROM_UNVERIFIED = Reply(550, "5.7.1", "From a local domain requires authentication or an aligned DKIM signature")
# RFC 5321 §3.8, RFC 3463 X.7.0: over the connection caps.
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
# RFC 5321 §4.5.3.2: the DATA transfer did not finish in time (RFC 3463 X.4.2 bad connection).
DATA_TIMEOUT = Reply(421, "4.4.2", "Data transfer timed out, closing connection")


def ok_queued(queue_id: str) -> Reply:
    """250 after DATA, naming the id under which the message was queued."""
    return Reply(250, "2.0.0", f"OK queued as {queue_id}")


# ---------------------------------------------------------------------------
# Envelope types
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed envelope address: `local` unquoted, `domain` lowercased A-label form.

    The null reverse-path `<>` is ``Address("", "")``; the bare RCPT `<postmaster>`
    (RFC 5321 §4.5.1) is ``Address("postmaster", "")``.
    """

    local: str
    domain: str

    @property
    def is_null(self) -> bool:
        return self.local == "" and self.domain == ""

    @property
    def is_literal(self) -> bool:
        """Domain is an address literal such as ``[192.0.2.1]`` (RFC 5321 §4.1.3)."""
        return self.domain.startswith("[")

    @property
    def is_bare_postmaster(self) -> bool:
        return self.domain == "" and self.local.lower() == "postmaster"

    def quoted_local(self) -> str:
        """The local part as it must be written on the wire (RFC 5321 §4.1.2)."""
        if _DOT_STRING_RE.match(self.local):
            return self.local
        escaped = self.local.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'

    def key(self) -> str:
        """Comparison key: lower-cased local part and domain (accounts are case-insensitive here)."""
        return f"{self.local.lower()}@{self.domain}" if self.domain else self.local.lower()

    def __str__(self) -> str:
        if self.is_null:
            return ""
        if not self.domain:
            return self.local
        return f"{self.quoted_local()}@{self.domain}"


# RFC 5321 §4.1.2 Dot-string, with RFC 6531 §3.3 UTF8-non-ascii allowed in atext.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_STRING_RE = re.compile(rf"\A{_ATEXT}+(?:\.{_ATEXT}+)*\Z")


Ret = Literal["FULL", "HDRS"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """What SMTP carried around the message: reverse-path, forward-paths and MAIL parameters.

    `mail_from` is "" for the null reverse-path. `ret` and `envid` are the
    RFC 3461 §4.3/§4.4 DSN parameters of MAIL.
    """

    mail_from: str
    rcpt_to: tuple[str, ...]
    smtputf8: bool = False
    body_8bit: bool = False
    size: int | None = None
    ret: Ret | None = None
    envid: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rcpt_to, tuple):
            raise TypeError("rcpt_to must be a tuple")
        for value in (self.mail_from, *self.rcpt_to):
            if any(c in value for c in "\r\n\x00"):
                raise ValueError("envelope address contains a forbidden character")

    @property
    def is_bounce(self) -> bool:
        """True for the null reverse-path: such mail is never answered with a bounce (RFC 5321 §4.5.5)."""
        return self.mail_from == ""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One forward-path within a transaction, with its per-recipient outcome once known.

    `notify` holds RFC 3461 §4.1 NOTIFY keywords (empty = not given);
    `orcpt` the RFC 3461 §4.2 original recipient.
    """

    address: str
    result: Reply | None = None
    notify: frozenset[str] = field(default_factory=frozenset)
    orcpt: str | None = None

    @property
    def accepted(self) -> bool:
        return self.result is not None and self.result.is_positive

    @property
    def pending(self) -> bool:
        return self.result is None

    def with_result(self, result: Reply) -> Recipient:
        return replace(self, result=result)
