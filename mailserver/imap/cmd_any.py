"""Handlers valid before login or in any state: CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, AUTHENTICATE, LOGIN, ENABLE, NAMESPACE."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING

from mailserver.auth import AppPasswordRequired, AuthFailed, AuthThrottled

from . import commands as c
from . import responses as r
from .grammar import ContinuationLine
from .names import DELIMITER, SHARED
from .states import REPLIED, Bad, No, Ok, SessionEnd

if TYPE_CHECKING:
    from .session import Session

SERVER_ID = (("name", "Postroom"), ("vendor", "Postroom"), ("version", "0.1.0"))
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
ENABLEABLE = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"}
_SPELLING = {"IMAP4REV2": "IMAP4rev2"}  # as CAPABILITY spells it (names are case-insensitive, RFC 5161 §3.1)


async def capability(s: Session, tag: str, cmd: c.Capability) -> Ok:  # RFC 3501 §6.1.1
    s.wire.write(bytes(r.Capabilities(s.capabilities())))
    return Ok("CAPABILITY completed")


async def noop(s: Session, tag: str, cmd: c.CommandBody) -> Ok:  # RFC 3501 §6.1.2; updates come from sync
    return Ok(f"{cmd.name} completed")


async def logout(s: Session, tag: str, cmd: c.Logout) -> Ok:  # RFC 3501 §6.1.3
    s.wire.write(bytes(r.bye("Logging out")))
    s.wire.write(bytes(r.Tagged(tag, "OK", "LOGOUT completed")))
    raise SessionEnd("logout")


async def id_(s: Session, tag: str, cmd: c.Id) -> Ok:  # RFC 2971 §3.1
    if cmd.params:
        info = {k.lower(): v for k, v in cmd.params}
        name = " ".join(x for x in (info.get("name"), info.get("version")) if x)
        s.client_id = _PRINTABLE.sub("?", name)[:80]
    s.wire.write(bytes(r.IdData(SERVER_ID)))
    return Ok("ID completed")


async def starttls(s: Session, tag: str, cmd: c.StartTLS) -> Ok:  # RFC 3501 §6.2.1
    if s.wire.tls or not s.services.tls_available:
        raise Bad("STARTTLS is not available here")
    # Plaintext pipelined behind STARTTLS is discarded by the wire, never run (CVE-2011-0411);
    # a fresh parser follows and the client must ask for CAPABILITY again.
    await s.wire.start_tls(bytes(r.Tagged(tag, "OK", "Begin TLS negotiation now")))
    return REPLIED


async def compress(s: Session, tag: str, cmd: c.Compress) -> Ok:  # RFC 4978 §3
    if cmd.mechanism != "DEFLATE":
        raise Bad("Only COMPRESS DEFLATE is supported")
    if s.wire.compressed:
        raise No("Compression is already active", r.Code("COMPRESSIONACTIVE"))
    # Everything after the tagged OK, in both directions, is raw DEFLATE (RFC 1951).
    await s.wire.start_compress(bytes(r.Tagged(tag, "OK", "DEFLATE active")))
    return REPLIED


async def login(s: Session, tag: str, cmd: c.Login) -> Ok:  # RFC 3501 §6.2.3
    if not s.plaintext_ok():
        raise No("Log in over TLS (STARTTLS) first", r.PRIVACYREQUIRED)
    await _login(s, cmd.username, cmd.password)
    return Ok("LOGIN completed", r.Code.capability(s.capabilities()))


async def authenticate(s: Session, tag: str, cmd: c.Authenticate) -> Ok:  # RFC 3501 §6.2.2, RFC 4616
    if cmd.mechanism != "PLAIN":
        raise No(f"Unsupported authentication mechanism {cmd.mechanism[:20]}", r.CANNOT)
    if not s.plaintext_ok():
        raise No("Authenticate over TLS (STARTTLS) first", r.PRIVACYREQUIRED)
    data = cmd.initial_response
    if data is None:  # no SASL-IR (RFC 4959): ask for the response
        s.wire.parser.expect_line()
        s.wire.write(bytes(r.SaslChallenge(b"")))
        await s.wire.drain()
        event = await s.wire.next_event()
        if not isinstance(event, ContinuationLine):
            raise Bad("Expected a SASL response line")
        if event.data.strip() == b"*":
            raise Bad("Authentication cancelled")  # RFC 3501 §6.2.2
        try:
            data = base64.b64decode(event.data.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise Bad("Invalid base64 in SASL response") from None
    parts = data.split(b"\x00")
    if len(parts) != 3:
        raise Bad("Malformed PLAIN response")
    authzid, authcid, password = (p.decode("utf-8", "replace") for p in parts)
    if authzid and authzid.lower() != authcid.lower():  # RFC 4616 §2: no proxy logins
        raise No("Cannot log in as another user", r.AUTHORIZATIONFAILED)
    await _login(s, authcid, password)
    return Ok("AUTHENTICATE completed", r.Code.capability(s.capabilities()))


APP_PASSWORD_REQUIRED = ("Two-step sign-in is on for this account: mail clients log in with an app password "
                         "(create one in the webmail under App passwords)")


async def _login(s: Session, username: str, password: str) -> None:
    try:
        account = await s.services.auth.login(username, password, ip=s.wire.peer_ip, protocol="imap")
    except AuthThrottled:
        raise No("Too many failed logins; try again later", r.UNAVAILABLE) from None
    except AppPasswordRequired:
        raise No(APP_PASSWORD_REQUIRED, r.AUTHENTICATIONFAILED) from None
    except AuthFailed:
        raise No("Authentication failed", r.AUTHENTICATIONFAILED) from None
    s.logged_in(account)


async def enable(s: Session, tag: str, cmd: c.Enable) -> Ok:  # RFC 5161 §3.1
    newly = []
    for cap in cmd.capabilities:
        cap = _SPELLING.get(cap, cap)
        if cap.upper() in ENABLEABLE and cap not in s.enabled:
            s.enabled.add(cap)
            newly.append(cap)
            # RFC 6855 §3, RFC 9051 §5.1: mailbox names are UTF-8 from now on
            if cap in ("UTF8=ACCEPT", "IMAP4rev2"):
                s.wire.parser.utf8_names = True
            if cap in ("CONDSTORE", "QRESYNC"):  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
                s.enable_condstore()
    s.wire.write(bytes(r.Enabled(tuple(newly))))
    return Ok("ENABLE completed")


async def namespace(s: Session, tag: str, cmd: c.Namespace) -> Ok:  # RFC 2342 §5
    s.wire.write(bytes(r.NamespaceData(personal=(("", DELIMITER),), other=((SHARED + DELIMITER, DELIMITER),),
                                       shared=None, utf8=s.utf8)))
    return Ok("NAMESPACE completed")
