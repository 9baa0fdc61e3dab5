"""The `Received:` trace header (RFC 5321 §4.4) that every hop prepends.

Everything the client chose (HELO name, reverse DNS, TLS details) is checked
or reduced to safe comment text first: a trace header must never carry a
line break or an unbalanced parenthesis from the outside.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from datetime import datetime
from email.utils import format_datetime

from mailboxes.headers import MAX_HEADER_BLOCK, scan_header

__all__ = ["MAX_RECEIVED", "date_time", "hop_count", "received_header", "too_many_hops", "with_protocol"]

MAX_COMMENT = 200  # characters of client-supplied text kept in a comment
# RFC 5321 §6.3: a loop is found by counting Received fields; the limit "SHOULD be at least 100".
# A message may carry at most this many, ours included: one that arrives with MAX_RECEIVED is refused.
MAX_RECEIVED = 100

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"\A{_LABEL}(?:\.{_LABEL})*\.?\Z")
_ATOM_RE = re.compile(r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,128}\Z")  # RFC 5322 §3.2.3 atom


@functools.lru_cache(maxsize=8)
def _date_time(second: datetime) -> str:
    return format_datetime(second)


def date_time(when: datetime) -> str:
    """RFC 5322 §3.3 date-time of an aware datetime, made once per second (it has no finer field)."""
    return _date_time(when.replace(microsecond=0))


def hop_count(data: bytes) -> int:
    """How many top-level Received fields `data` has (read as every other header reader reads them)."""
    fields, _ = scan_header(data, 0, min(len(data), MAX_HEADER_BLOCK + 1))
    return sum(1 for f in fields if f[0] == "received")


def too_many_hops(data: bytes, *, adding: int = 1) -> bool:
    """True when `data` with `adding` more Received fields would pass MAX_RECEIVED (RFC 5321 §6.3)."""
    return hop_count(data) + adding > MAX_RECEIVED


def with_protocol(*, esmtp: bool, tls: bool, authenticated: bool, smtputf8: bool = False) -> str:
    """The `with` keyword: SMTP/ESMTP plus S (TLS) and A (auth), RFC 3848 §1–§4; UTF8 prefix per RFC 6531 §3.7.3."""
    if smtputf8:
        base = "UTF8SMTP"
    else:
        base = "ESMTP" if esmtp or tls or authenticated else "SMTP"
    if base == "SMTP":
        return base
    return base + ("S" if tls else "") + ("A" if authenticated else "")


@functools.lru_cache(maxsize=1024)  # one entry per client address: parsing it was 3 % of a notification's CPU
def _literal(ip: str) -> str | None:
    """RFC 5321 §4.1.3 address literal for a client IP (zone index dropped)."""
    try:
        addr = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return f"[{addr.ipv4_mapped}]"
        return f"[IPv6:{addr.compressed}]"
    return f"[{addr}]"


def _comment_text(text: str) -> str:
    """Printable ASCII without the characters that end or escape a comment (RFC 5322 §3.2.2)."""
    flat = " ".join(text.split())
    return "".join(c for c in flat if 32 <= ord(c) < 127 and c not in "()\\")[:MAX_COMMENT]


@functools.lru_cache(maxsize=1024)
def _domain(text: str | None) -> str | None:
    if text and len(text) <= 255 and _DOMAIN_RE.match(text):
        return text.rstrip(".").lower()
    return None


def received_header(
    *,
    helo: str,
    client_ip: str,
    client_rdns: str | None,
    by_host: str,
    protocol: str,
    when: datetime,
    queue_id: str | None = None,
    recipient: str | None = None,
    tls_info: str | None = None,
) -> bytes:
    """`Received: from … by … with … id … for <…>; date` as CRLF-terminated bytes.

    Pass `recipient` only when the message has exactly one, so that Bcc
    recipients are not revealed to each other (RFC 5321 §7.2).
    """
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    if not _ATOM_RE.match(protocol):
        raise ValueError(f"bad protocol keyword: {protocol!r}")
    by = _domain(by_host)
    if by is None:
        raise ValueError(f"bad by-host name: {by_host!r}")
    literal = _literal(client_ip) or "[unknown]"
    rdns = _domain(client_rdns) or "unknown"

    # RFC 5321 §4.4 From-domain = "FROM" FWS Extended-Domain;
    # Extended-Domain = Domain FWS "(" TCP-info ")" / address-literal FWS "(" TCP-info ")".
    helo_text = helo.strip()
    helo_domain = _domain(helo_text) or (helo_text if helo_text == literal else None)
    if helo_domain is not None:
        from_part = f"from {helo_domain} ({rdns} {literal})"
    else:
        shown = _comment_text(helo_text) or "none"
        from_part = f"from {literal} ({rdns} {literal} helo={shown})"

    lines = [from_part]
    # RFC 5321 §4.4 By-domain, With (protocol registered by RFC 3848 / RFC 6531).
    with_clause = f"by {by} with {protocol}"
    if tls_info:
        with_clause += f" ({_comment_text(tls_info)})"
    if queue_id and _ATOM_RE.match(queue_id):
        with_clause += f" id {queue_id}"  # RFC 5321 §4.4 ID = CFWS "ID" FWS ( Atom / msg-id )
    lines.append(with_clause)
    if recipient and not any(c in recipient for c in "\r\n\t <>()\x00\\"):
        lines.append(f"for <{recipient}>")  # RFC 5321 §4.4 For
    # RFC 5321 §4.4: [CFWS] ";" FWS date-time (RFC 5322 §3.3).
    lines[-1] += ";"
    lines.append(date_time(when))
    return ("Received: " + "\r\n\t".join(lines) + "\r\n").encode("utf-8")
