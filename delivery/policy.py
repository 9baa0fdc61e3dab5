"""Pure SMTP door rules: parse MAIL/RCPT paths, decide local / relay / refuse, authorise senders.

Nothing here does I/O; the aiosmtpd adapter calls these functions and writes
`str(reply)` for any `Reply` they return. One error type, `PolicyError`, may
escape `parse_path`.

Relay decisions (`check_recipient`, after `parse_path`). "unauth" is a client
that has not authenticated; "auth" one that has. NO OPEN RELAY: an
unauthenticated client can only ever reach LOCAL.

| Input (forward-path)                          | unauth                 | auth                   | Why |
|-----------------------------------------------|------------------------|------------------------|-----|
| `<user@local.test>`                           | LOCAL                  | LOCAL                  | listed local domain |
| `<USER@LoCaL.TeSt>`                           | LOCAL                  | LOCAL                  | domains are case-insensitive (RFC 5321 §2.4) |
| `<user@local.test.>`                          | LOCAL                  | LOCAL                  | one trailing dot = the same absolute name |
| `<"user"@local.test>`                         | LOCAL                  | LOCAL                  | quoted dot-string = unquoted (RFC 5322 §3.4.1) |
| `<postmaster>` / `<Postmaster>`               | LOCAL                  | LOCAL                  | RFC 5321 §4.1.1.3, §4.5.1 |
| `<@local.test:user@local.test>`               | LOCAL                  | LOCAL                  | source route ignored (RFC 5321 §4.1.2, App. C) |
| `<user@remote.example>`                       | 554 5.7.1              | REMOTE_ALLOWED         | relaying needs authentication |
| `<@local.test:user@remote.example>`           | 554 5.7.1              | REMOTE_ALLOWED         | route ignored, final address decides |
| `<user@remote.example.>`                      | 554 5.7.1              | REMOTE_ALLOWED         | trailing dot stripped, still remote |
| `<user@evil.local.test>`                      | 554 5.7.1              | REMOTE_ALLOWED         | subdomains are not local unless listed |
| `<user@lоcal.test>` (Cyrillic о), SMTPUTF8    | 554 5.7.1              | REMOTE_ALLOWED         | IDNA A-label differs from ours |
| same without SMTPUTF8                         | 553 5.6.7              | 553 5.6.7              | RFC 6531 §3.5 |
| `<user@[192.0.2.1]>`, `<user@[IPv6:…]>`       | 554 5.7.1              | 550 5.7.1              | address literals never local, never relayed |
| `<user@localhost>` (unlisted, one label)      | 554 5.7.1              | 550 5.1.2              | no relaying to bare host names |
| `<user%remote.example@local.test>`            | 550 5.1.1              | 550 5.1.1              | percent hack never interpreted; no such account |
| `<remote.example!user@local.test>`            | 550 5.1.1              | 550 5.1.1              | bang path never interpreted |
| `<"user@remote.example"@local.test>`          | 550 5.1.1              | 550 5.1.1              | quoted `@` never re-parsed |
| `<"user%remote"@local.test>`, `<"a b"@local.test>` | 550 5.1.1         | 550 5.1.1              | we create no such accounts |
| `<user@local.test@remote.example>`            | 501 5.1.3              | 501 5.1.3              | two `@`: not a Mailbox |
| `user@remote.example` (no brackets)           | 501 5.1.3              | 501 5.1.3              | RFC 5321 §4.1.2 Path needs `<>` |
| `<user@remote.example>>`, `user@x>`           | 501 5.1.3              | 501 5.1.3              | junk around the path |
| `<user @local.test>`, `<user@local .test>`    | 501 5.1.3              | 501 5.1.3              | space outside a quoted string |
| NUL, CR, LF anywhere                          | 501 5.1.3              | 501 5.1.3              | never legal in a path |
| `<user@local.test..>`, `<user@-x.test>`       | 501 5.1.3              | 501 5.1.3              | RFC 5321 §4.1.2 Domain syntax |
| `<user@127.0.0.1>` (numeric TLD)              | 501 5.1.3              | 501 5.1.3              | not a domain name (RFC 3696 §2) |
| local part > 64 octets, domain > 255          | 501 5.1.3              | 501 5.1.3              | RFC 5321 §4.5.3.1.1, §4.5.3.1.2 |
| `<>` as RCPT                                  | 501 5.1.3              | 501 5.1.3              | null path is for MAIL only (RFC 5321 §4.1.1.2) |
| `<[192.0.2.1]>`, `<user@[bogus]>`             | 501 5.1.3              | 501 5.1.3              | malformed literal |
| IDN under .local/.localhost/.onion/...        | 501 5.1.3              | 501 5.1.3              | email-validator refuses special-use IDNs |

Senders (`check_sender`, submission only): the authenticated account may use
its own address and the addresses the directory lists for it (aliases, groups
it may post as); anything else, and the null path, is 553 5.7.1. The same
rule is applied to the From: (and Sender:) header by `check_header_from`.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import unicodedata
from collections.abc import Collection
from email_validator import EmailSyntaxError
from email_validator.syntax import validate_email_domain_name

from delivery.envelope import (
    ADDRESS_LITERAL_REFUSED,
    AUTH_THROTTLED,
    BAD_DESTINATION,
    BAD_FROM,
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER,
    BAD_SENDER_SYNTAX,
    HEADER_FIELD_TOO_LONG,
    HEADER_FROM_NOT_ALLOWED,
    HEADER_TOO_BIG,
    LOCAL_SENDER_REQUIRES_AUTH,
    NO_FROM,
    NON_ASCII_ADDRESS,
    RELAY_DENIED,
    SENDER_NOT_ALLOWED,
    SEVERAL_FROM,
    SEVERAL_SENDER,
    TOO_MANY_ENCODED_WORDS,
    TOO_MANY_HEADER_ADDRESSES,
    UNKNOWN_USER,
    Address,
    Reply,
)
from mailboxes.headers import HeaderProblem, originator

__all__ = [
    "Address",
    "PolicyError",
    "Route",
    "check_forward_path",
    "check_header_from",
    "check_recipient",
    "check_sender",
    "check_unauthenticated_sender",
    "header_reply",
    "normalise_domain",
    "parse_path",
    "throttle_reply",
]

# Limits (RFC 5321 §4.5.3.1).
MAX_LOCAL_PART = 64  # §4.5.3.1.1, octets
MAX_DOMAIN = 255  # §4.5.3.1.2, octets
MAX_PATH = 256  # §4.5.3.1.3, octets including the angle brackets
MAX_LABEL = 63  # RFC 1035 §2.3.4


class PolicyError(Exception):
    """A path or address was refused; `reply` is what the client should be told."""

    def __init__(self, reply: Reply, detail: str = "") -> None:
        super().__init__(detail or reply.text)
        self.reply = reply
        self.detail = detail


class Route(enum.Enum):
    """Where an accepted recipient goes."""

    LOCAL = "local"
    REMOTE_ALLOWED = "remote"


# ---------------------------------------------------------------------------
# Syntax pieces (RFC 5321 §4.1.2, RFC 6531 §3.3)
# ---------------------------------------------------------------------------

_ASCII_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-")
_LABEL_RE = re.compile(r"\A[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
_IPV4_RE = re.compile(r"\A\d{1,3}(?:\.\d{1,3}){3}\Z")
# Unicode categories never acceptable in an address: controls, format
# characters (zero-width, bidi), surrogates, private use, unassigned, separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Local parts we would have to re-interpret as routes; never an account here.
_ROUTING_CHARS = frozenset("%!@")


def _is_atext(c: str, smtputf8: bool) -> bool:
    # RFC 5321 §4.1.2 atext; RFC 6531 §3.3 adds UTF8-non-ascii.
    return c in _ASCII_ATEXT or (smtputf8 and ord(c) > 127)


def _is_qtext(c: str, smtputf8: bool) -> bool:
    # RFC 5321 §4.1.2 qtextSMTP = %d32-33 / %d35-91 / %d93-126; RFC 6531 §3.3 adds UTF8-non-ascii.
    o = ord(c)
    return o in (32, 33) or 35 <= o <= 91 or 93 <= o <= 126 or (smtputf8 and o > 127)


def _is_dot_string(s: str, smtputf8: bool) -> bool:
    # RFC 5321 §4.1.2: Dot-string = Atom *("." Atom)
    if not s:
        return False
    if s.isascii():  # the usual case: a set test per atom instead of a call per character
        return all(atom and _ASCII_ATEXT.issuperset(atom) for atom in s.split("."))
    return all(atom and all(_is_atext(c, smtputf8) for c in atom) for atom in s.split("."))


def _octets(s: str) -> int:
    return len(s.encode("utf-8"))


def _ascii_domain(text: str) -> str | None:
    """Check an ASCII domain (RFC 5321 §4.1.2 Domain, RFC 1035 §2.3.4) and lowercase it."""
    domain = text.lower()
    if not domain or len(domain) > MAX_DOMAIN:
        return None
    labels = domain.split(".")
    if not all(len(label) <= MAX_LABEL and _LABEL_RE.match(label) for label in labels):
        return None
    # RFC 3696 §2: a top-level domain is never all-numeric, so `127.0.0.1` is not a name.
    if labels[-1].isdigit():
        return None
    return domain


@functools.lru_cache(maxsize=4096)
def _canonical_domain(text: str, smtputf8: bool) -> str | None:
    """Domain text → lowercased A-label form, or None when it is not a valid domain name."""
    if text.endswith("."):
        text = text[:-1]  # one trailing dot: the same absolute name (RFC 1034 §3.1)
    if not text or _octets(text) > MAX_DOMAIN:
        return None
    if text.isascii():
        return _ascii_domain(text)
    if not smtputf8:
        return None
    try:
        # RFC 5890/5891 via email-validator: UTS-46 mapping, NFC, A-label conversion.
        result = validate_email_domain_name(text, test_environment=True, globally_deliverable=False)
    except (EmailSyntaxError, UnicodeError, ValueError):
        return None
    return _ascii_domain(result["ascii_domain"])


def _address_literal(text: str) -> str | None:
    """Validate `[...]` (RFC 5321 §4.1.3) and return its canonical spelling."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else None
    if not inner:
        return None
    if _IPV4_RE.match(inner):
        try:
            return f"[{ipaddress.IPv4Address(inner)}]"
        except ValueError:
            return None
    if inner[:5].lower() == "ipv6:":
        candidate = inner[5:]
        if "%" in candidate:  # no zone index in SMTP
            return None
        try:
            return f"[IPv6:{ipaddress.IPv6Address(candidate).compressed}]"
        except ValueError:
            return None
    return None  # General-address-literal: no other tag is registered


def normalise_domain(domain: str) -> str:
    """Canonical form of a configured domain (lowercase, A-label, no trailing dot); ValueError if invalid."""
    canonical = _canonical_domain(domain.strip(), True)
    if canonical is None:
        raise ValueError(f"not a valid domain name: {domain!r}")
    return canonical


def _domain_set(domains: Collection[str]) -> frozenset[str]:
    out = set()
    for d in domains:
        canonical = _canonical_domain(d.strip(), True)
        if canonical is not None:
            out.add(canonical)
    return frozenset(out)


# ---------------------------------------------------------------------------
# parse_path
# ---------------------------------------------------------------------------


def _split_quoted(text: str, smtputf8: bool, bad: Reply) -> tuple[str, str, int]:
    """Parse a leading Quoted-string; return (content, raw, index after the closing quote)."""
    out: list[str] = []
    i = 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return "".join(out), text[: i + 1], i + 1
        if c == "\\":
            # RFC 5321 §4.1.2 quoted-pairSMTP = %d92 %d32-126
            if i + 1 >= n or not 32 <= ord(text[i + 1]) <= 126:
                raise PolicyError(bad, "bad quoted-pair")
            out.append(text[i + 1])
            i += 2
            continue
        if not _is_qtext(c, smtputf8):
            raise PolicyError(bad, "bad character in quoted string")
        out.append(c)
        i += 1
    raise PolicyError(bad, "unterminated quoted string")


def _parse_mailbox(text: str, smtputf8: bool, bad: Reply) -> Address:
    """RFC 5321 §4.1.2: Mailbox = Local-part "@" ( Domain / address-literal )."""
    if text.startswith('"'):
        local, raw_local, end = _split_quoted(text, smtputf8, bad)
        if end >= len(text) or text[end] != "@":
            raise PolicyError(bad, "quoted local part not followed by @")
        domain_text = text[end + 1 :]
    else:
        at = text.find("@")
        if at <= 0:
            raise PolicyError(bad, "no local part")
        local = raw_local = text[:at]
        domain_text = text[at + 1 :]
        if not _is_dot_string(local, smtputf8):
            raise PolicyError(bad, "local part is not a dot-string")
    if not local:
        raise PolicyError(bad, "empty local part")
    if _octets(raw_local) > MAX_LOCAL_PART:  # RFC 5321 §4.5.3.1.1
        raise PolicyError(bad, "local part too long")
    if domain_text.startswith("["):
        domain = _address_literal(domain_text)
    else:
        domain = _canonical_domain(domain_text, smtputf8)
    if domain is None:
        raise PolicyError(bad, "bad domain")
    # RFC 6532 §3.1: compare internationalized local parts in NFC.
    return Address(unicodedata.normalize("NFC", local), domain)


def parse_path(s: str, smtputf8: bool, *, reverse: bool = False) -> Address:
    """Parse the path argument of MAIL FROM (`reverse=True`) or RCPT TO (RFC 5321 §4.1.2).

    `s` is the path itself, e.g. ``"<user@example.org>"`` (ESMTP parameters
    already split off). Raises `PolicyError` and nothing else.
    """
    bad = BAD_SENDER_SYNTAX if reverse else BAD_RECIPIENT_SYNTAX
    if not isinstance(s, str):
        raise PolicyError(bad, "path is not text")
    # NUL, CR and LF are never part of a path; neither are surrogates (undecodable bytes).
    # (Printable ASCII has none of them: then the scan per character is skipped.)
    if not (s.isascii() and s.isprintable()) and any(c in "\x00\r\n" or 0xD800 <= ord(c) <= 0xDFFF for c in s):
        raise PolicyError(bad, "control character in path")
    text = s.strip(" \t")  # leniency: "MAIL FROM: <a@b>" is common though not RFC 5321
    if not text.isascii():
        if not smtputf8:
            raise PolicyError(NON_ASCII_ADDRESS, "non-ASCII without SMTPUTF8")
        if any(ord(c) > 127 and unicodedata.category(c) in _BAD_CATEGORIES for c in text):
            raise PolicyError(bad, "unsafe Unicode character")
    if _octets(text) > MAX_PATH:  # RFC 5321 §4.5.3.1.3
        raise PolicyError(bad, "path too long")
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise PolicyError(bad, "path without angle brackets")
    inner = text[1:-1]
    if inner == "":
        if reverse:
            return Address("", "")  # RFC 5321 §4.1.1.2: null reverse-path
        raise PolicyError(bad, "null forward-path")
    if not reverse and inner.lower() == "postmaster":
        return Address("postmaster", "")  # RFC 5321 §4.1.1.3 "<Postmaster>"
    if inner.startswith("@"):
        # RFC 5321 §4.1.2 A-d-l: check its syntax, then ignore it (RFC 5321 App. C).
        colon = inner.find(":")
        if colon < 0:
            raise PolicyError(bad, "source route without colon")
        for hop in inner[:colon].split(","):
            if not hop.startswith("@") or _canonical_domain(hop[1:], smtputf8) is None:
                raise PolicyError(bad, "bad source route")
        inner = inner[colon + 1 :]
    return _parse_mailbox(inner, smtputf8, bad)


# ---------------------------------------------------------------------------
# Recipients and relay
# ---------------------------------------------------------------------------


def _is_account_local_part(local: str) -> bool:
    """Could this local part name one of our accounts? Dot-atom only, no routing characters."""
    return _is_dot_string(local, True) and not (_ROUTING_CHARS & set(local))


def check_recipient(
    addr: Address,
    *,
    authenticated: bool,
    local_domains: Collection[str],
) -> Route | Reply:
    """Decide where a parsed forward-path goes, or why it is refused (table in the module docstring)."""
    if addr.is_null:
        return BAD_RECIPIENT_SYNTAX
    if addr.is_bare_postmaster:
        return Route.LOCAL  # RFC 5321 §4.5.1: postmaster is always accepted
    if addr.is_literal:
        # RFC 5321 §4.1.3 allows literals; we host no mailbox at one and relay to none.
        return ADDRESS_LITERAL_REFUSED if authenticated else RELAY_DENIED
    domain = _canonical_domain(addr.domain, True)
    if domain is None:
        return BAD_RECIPIENT_SYNTAX
    if domain in _domain_set(local_domains):
        if not _is_account_local_part(addr.local):
            # Percent hack, bang paths, quoted "@": never re-routed (RFC 5321 App. C
            # leaves % and ! to local policy); no account has such a name.
            return UNKNOWN_USER
        return Route.LOCAL
    if not authenticated:
        return RELAY_DENIED  # the one rule that keeps us from being an open relay
    if "." not in domain:
        return BAD_DESTINATION  # a bare host name would resolve inside our network
    return Route.REMOTE_ALLOWED


def check_forward_path(
    path: str,
    *,
    smtputf8: bool,
    authenticated: bool,
    local_domains: Collection[str],
) -> tuple[Address | None, Route | Reply]:
    """`parse_path` then `check_recipient`, with a syntax error turned into its Reply."""
    try:
        addr = parse_path(path, smtputf8)
    except PolicyError as e:
        return None, e.reply
    return addr, check_recipient(addr, authenticated=authenticated, local_domains=local_domains)


# ---------------------------------------------------------------------------
# Senders
# ---------------------------------------------------------------------------


def _key(address: str) -> str | None:
    """Comparison key of an address string: lower-cased local part @ canonical domain."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return None
    canonical = _canonical_domain(domain, True)
    if canonical is None:
        return None
    return f"{unicodedata.normalize('NFC', local).lower()}@{canonical}"


def _allowed_keys(login_account: str, allowed_addresses: Collection[str]) -> frozenset[str]:
    keys = {_key(a) for a in (login_account, *allowed_addresses)}
    keys.discard(None)
    return frozenset(k for k in keys if k is not None)


def check_sender(
    mail_from: Address,
    *,
    login_account: str,
    allowed_addresses: Collection[str],
) -> Reply | None:
    """Submission (RFC 6409 §6.1): may this login use this reverse-path? None means yes."""
    if mail_from.is_null or not mail_from.domain or mail_from.is_literal:
        return SENDER_NOT_ALLOWED
    if _key(f"{mail_from.local}@{mail_from.domain}") in _allowed_keys(login_account, allowed_addresses):
        return None
    return SENDER_NOT_ALLOWED


def check_unauthenticated_sender(mail_from: Address, *, local_domains: Collection[str]) -> Reply | None:
    """An unauthenticated client may not claim one of our domains as its reverse-path."""
    if mail_from.is_null or mail_from.is_literal or not mail_from.domain:
        return None
    if mail_from.domain in _domain_set(local_domains):
        return LOCAL_SENDER_REQUIRES_AUTH
    return None


# What the client is told for each header problem (mailboxes.headers reads the header).
HEADER_REPLIES: dict[HeaderProblem, Reply] = {
    HeaderProblem.BLOCK_TOO_BIG: HEADER_TOO_BIG,
    HeaderProblem.FIELD_TOO_LONG: HEADER_FIELD_TOO_LONG,
    HeaderProblem.TOO_MANY_ENCODED_WORDS: TOO_MANY_ENCODED_WORDS,
    HeaderProblem.TOO_MANY_ADDRESSES: TOO_MANY_HEADER_ADDRESSES,
    HeaderProblem.NO_FROM: NO_FROM,
    HeaderProblem.SEVERAL_FROM: SEVERAL_FROM,
    HeaderProblem.BAD_FROM: BAD_FROM,
    HeaderProblem.SEVERAL_SENDER: SEVERAL_SENDER,
    HeaderProblem.BAD_SENDER: BAD_SENDER,
}


def header_reply(problem: HeaderProblem) -> Reply:
    return HEADER_REPLIES[problem]


def check_header_from(
    message: bytes,
    *,
    login_account: str,
    allowed_addresses: Collection[str],
) -> Reply | None:
    """Do the From: (and Sender:) header addresses belong to this login? None means yes.

    The header is read by mailboxes.headers, the reader ENVELOPE and DKIM signing use.
    RFC 5322 §3.6: exactly one From field (any spelling counted), at most one Sender;
    §3.6.2: Sender is required when From lists several mailboxes. Fields that parse
    differently or not at all are refused, not guessed at.
    """
    allowed = _allowed_keys(login_account, allowed_addresses)
    who = originator(message)
    if who.problem is not None:
        return header_reply(who.problem)
    if len(who.from_) > 1 and not who.sender:
        return HEADER_FROM_NOT_ALLOWED
    for a in (*who.from_, *who.sender):
        if _key(f"{a.mailbox}@{a.host}") not in allowed:
            return HEADER_FROM_NOT_ALLOWED
    return None


# ---------------------------------------------------------------------------
# Throttle → reply
# ---------------------------------------------------------------------------


def throttle_reply(retry_after: float | None) -> Reply | None:
    """Map `AuthThrottle.check` (seconds to wait, or None) to the SMTP reply (RFC 4954 §6: 454 4.7.0)."""
    if retry_after is None:
        return None
    return AUTH_THROTTLED
