"""Pull routes at the city: mail for a district that cannot take connections is sealed with its envelope and held in a local account it fetches (issue 12 point 5).

Implementation notes
- `postroom route add DOMAIN pull:ACCOUNT` makes the route (delivery.routes, kind "pull"),
  creates the local ACCOUNT when missing and prints its password once; the district logs in
  with it (bridges.pull) and the same secret keys the envelope's MAC.
- The queue worker hands this module what it would send by SMTP: one envelope (reverse-path
  and the recipients of one domain) and the message. It is stored as ONE message in the
  account's INBOX, the envelope on top in fields the district reads:

      X-Postroom-Envelope: v=1; rcpts=2; mac=<hex HMAC-SHA256>
      X-Postroom-Envelope-From: <sender@city.test>
      X-Postroom-Envelope-To: <wang@district.test>
      X-Postroom-Envelope-To: <li@district.test>
      <the message, byte for byte as queued: DKIM signatures stay intact>

  The MAC (keyed by the route's secret) covers the envelope and the SHA-256 of the message,
  so the district trusts an envelope only if this city wrote it: mail sent straight to the
  pull account by anyone else, or fields forged inside a message, do not verify. The MAC is
  also the district's duplicate key (the same envelope and bytes stored twice after a crash
  between store and settle is delivered once there).
- A Return-Path in the queued message is dropped before sealing (RFC 5321 §4.4: the final
  delivery adds it; the city's local delivery replaces it and must not change sealed bytes).
- Everything else goes to the wrapped SMTP Outbound unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from mailboxes.headers import without_fields

from .outbound import RcptResult
from .routes import Route, Routes

SEAL_FIELD = "X-Postroom-Envelope"
FROM_FIELD = "X-Postroom-Envelope-From"
TO_FIELD = "X-Postroom-Envelope-To"
SEAL_VERSION = "1"
MAX_SEAL_RECIPIENTS = 10_000  # what a district accepts in one envelope (the city's own limit is [limits] max_recipients)
_MAC_LABEL = b"postroom-pull-envelope-v1\x00"


def new_secret() -> str:
    """A pull account's password, also the key of its envelopes' MAC (256 bits)."""
    return secrets.token_urlsafe(32)


def envelope_mac(secret: str, mail_from: str, rcpts: list[str] | tuple[str, ...], data: bytes) -> str:
    """HMAC-SHA256 over the envelope and the message's SHA-256 (hex)."""
    body = hashlib.sha256(data).digest()
    env = "\x00".join([mail_from, *rcpts]).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), _MAC_LABEL + len(rcpts).to_bytes(4, "big") + env + b"\x00" + body,
                    hashlib.sha256).hexdigest()


def _no_return_path(data: bytes) -> bytes:
    return without_fields(data, lambda name, _field: name == "return-path")


def seal(secret: str, mail_from: str, rcpts: list[str], data: bytes) -> bytes:
    """The message as stored for the district: the sealed envelope fields on top of the queued bytes."""
    data = _no_return_path(data)
    mac = envelope_mac(secret, mail_from, rcpts, data)
    head = [f"{SEAL_FIELD}: v={SEAL_VERSION}; rcpts={len(rcpts)}; mac={mac}", f"{FROM_FIELD}: <{mail_from}>"]
    head += [f"{TO_FIELD}: <{r}>" for r in rcpts]
    return ("\r\n".join(head) + "\r\n").encode("utf-8") + data


@dataclass(frozen=True)
class Sealed:
    """An envelope a district read and verified, and the message under it."""

    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes
    mac: str


class SealError(Exception):
    """Not an envelope sealed by our upstream (missing, malformed, or the MAC does not verify)."""


def _angle(value: str) -> str:
    value = value.strip()
    if not (value.startswith("<") and value.endswith(">")):
        raise SealError("an envelope address is not in angle brackets")
    return value[1:-1]


def unseal(secret: str, raw: bytes) -> Sealed:
    """Find the seal (below whatever the upstream's local delivery put on top), check it, return the envelope.

    Work is linear in the header block: one pass over its lines.
    """
    pos = 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0 or end == pos:
            raise SealError("no sealed envelope in the header")
        line = raw[pos:end]
        if line[:len(SEAL_FIELD) + 1].lower() == (SEAL_FIELD + ":").lower().encode():
            break
        pos = end + 2
    params = {}
    for part in line[len(SEAL_FIELD) + 1:].decode("ascii", "replace").split(";"):
        k, _, v = part.strip().partition("=")
        params[k] = v
    if params.get("v") != SEAL_VERSION or not params.get("rcpts", "").isdigit() or "mac" not in params:
        raise SealError("the envelope seal is malformed")
    n = int(params["rcpts"])
    if not 0 < n <= MAX_SEAL_RECIPIENTS:
        raise SealError("the envelope names no recipients, or too many")
    pos = end + 2
    fields: list[tuple[str, str]] = []
    for _ in range(n + 1):
        end = raw.find(b"\r\n", pos)
        if end < 0:
            raise SealError("the envelope is cut short")
        name, sep, value = raw[pos:end].decode("utf-8", "replace").partition(":")
        if not sep:
            raise SealError("the envelope is cut short")
        fields.append((name.strip().lower(), value))
        pos = end + 2
    if fields[0][0] != FROM_FIELD.lower() or any(f != TO_FIELD.lower() for f, _ in fields[1:]):
        raise SealError("the envelope fields are not in order")
    mail_from = _angle(fields[0][1])
    rcpts = tuple(_angle(v) for _, v in fields[1:])
    data = raw[pos:]
    mac = envelope_mac(secret, mail_from, rcpts, data)
    if not hmac.compare_digest(mac, params["mac"]):
        raise SealError("the envelope's MAC does not verify (not written by our upstream)")
    return Sealed(mail_from, rcpts, data, mac)


class PullRouting:
    """Mail for a domain on a pull route is stored, sealed, in the district's pull account instead of sent by SMTP.

    The queue worker asks `route(domain)` before it looks for SMTP targets; `hold` does the storing.
    """

    def __init__(self, routes: Routes, submitter) -> None:
        self.routes = routes
        self.submitter = submitter

    async def route(self, domain: str) -> Route | None:
        return await self.routes.pull_route(domain)

    async def hold(self, route: Route, mail_from: str, rcpts: list[str], data: bytes) -> tuple[list[RcptResult], str]:
        account = route.auth_user or ""
        why = await self.submitter.deliver_local(account, seal(route.auth_secret or "", mail_from, rcpts, data),
                                                 mail_from)
        via = f"pull:{account}"
        if why is None:
            return [RcptResult(r, "ok", "2.0.0", f"held for the district in {account}") for r in rcpts], via
        outcome = "temp" if why.is_transient else "perm"
        # The pull account is ours: its absence or a full quota is our problem, never the recipient's.
        return [RcptResult(r, "temp" if outcome == "perm" else outcome, "4.3.0" if outcome == "perm" else why.enhanced,
                           str(why).replace("\r\n", " ")) for r in rcpts], via
