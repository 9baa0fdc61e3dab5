"""Webhook endpoints: per source system the URL that receives signed callbacks and its HMAC secret.

Implementation notes
- One row per source system (the name its events come from, issue 11). `set` replaces the URL
  and, when asked, the secret; `remove` forgets both (callbacks still in the outbox for that
  source then go dead when their turn comes: bridges/outbox.py).
- The secret follows Standard Webhooks (standardwebhooks.com, "Signature scheme"): `whsec_`
  then the base64 of 24 to 64 random bytes; generated ones have 32 (256 bits). It is kept as
  given, unlike API tokens: signing needs the secret itself. Nothing here logs it, and
  `Endpoint.__repr__` leaves it out.
- URL policy (`check_url`): http or https only, a host, no user-info (credentials would be
  sent to, and logged as part of, every callback), at most MAX_URL characters. Plain http is
  for loopback receivers only unless `allow_plain_http` (the [webhooks] key of that name):
  callbacks carry the bureau's workflow data.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select, update

from . import schema as t
from .db import Database
from .errors import InvalidInput, NotFound
from .websessions import _aware, utcnow

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # generated secrets: 256 bits
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64  # Standard Webhooks' range for given secrets
MAX_URL = 2048  # the column's width
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch only: linear, no backtracking


@dataclass(frozen=True)
class Endpoint:
    source: str
    url: str
    secret: str = field(repr=False)
    created_at: datetime
    updated_at: datetime


def check_source(source: str) -> str:
    if not isinstance(source, str) or not SOURCE_NAME.fullmatch(source):
        raise InvalidInput("a source name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return source


def is_loopback_host(host: str) -> bool:
    """`localhost` or a literal loopback address (127.0.0.0/8, ::1); names are not resolved here."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_plain_http: bool = False) -> str:
    """The URL if callbacks may go there; InvalidInput naming the problem otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InvalidInput(f"a webhook URL is 1 to {MAX_URL} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidInput("a webhook URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidInput(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("a webhook URL must be http or https")
    if not host:
        raise InvalidInput("a webhook URL needs a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("a webhook URL must not carry a user name or password (the signature authenticates)")
    if parts.fragment:
        raise InvalidInput("a webhook URL has no #fragment")
    if parts.scheme == "http" and not allow_plain_http and not is_loopback_host(host):
        raise InvalidInput("plain http is refused for a host other than loopback: use https "
                           "(or set [webhooks] allow_plain_http = true)")
    return url


def redacted_url(url: str) -> str:
    """scheme://host:port/path of a URL, for logs: no query string (it may hold a receiver's token)."""
    try:
        p = urlsplit(url)
        host = p.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        return f"{p.scheme}://{host}{':' + str(p.port) if p.port else ''}{p.path or '/'}"
    except ValueError:
        return "(bad URL)"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_...` secret stands for; InvalidInput when it is not one."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidInput(f"a webhook secret starts with {SECRET_PREFIX} followed by base64")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise InvalidInput("a webhook secret is whsec_ followed by base64") from None
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise InvalidInput(f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return raw


def _endpoint(r) -> Endpoint:
    return Endpoint(r.source, r.url, r.secret, _aware(r.created_at), _aware(r.updated_at))


class WebhookEndpoints:
    """The webhook_endpoints table behind a small API; `clock` is passed in."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def set(self, source: str, url: str, *, secret: str | None = None, new_secret_too: bool = False,
                  allow_plain_http: bool = False) -> tuple[Endpoint, bool]:
        """Create or change a source's endpoint: (the endpoint, whether its secret was generated now).

        A new endpoint gets `secret` or a generated one; an existing one keeps its secret
        unless `secret` is given or `new_secret_too` asks for a fresh one.
        """
        check_source(source)
        check_url(url, allow_plain_http=allow_plain_http)
        if secret is not None:
            secret_key(secret)
        c = t.webhook_endpoints.c
        now = self.clock()
        async with self.db.write() as conn:
            old = (await conn.execute(select(c.secret).where(c.source == source))).first()
            generated = secret is None and (old is None or new_secret_too)
            if generated:
                secret = new_secret()
            if old is None:
                await conn.execute(insert(t.webhook_endpoints).values(
                    source=source, url=url, secret=secret, created_at=now, updated_at=now))
            else:
                values = {"url": url, "updated_at": now}
                if secret is not None:
                    values["secret"] = secret
                await conn.execute(update(t.webhook_endpoints).where(c.source == source).values(**values))
            r = (await conn.execute(select(t.webhook_endpoints).where(c.source == source))).one()
        return _endpoint(r), generated

    async def get(self, source: str) -> Endpoint:
        c = t.webhook_endpoints.c
        async with self.db.read() as conn:
            r = (await conn.execute(select(t.webhook_endpoints).where(c.source == source))).first()
        if r is None:
            raise NotFound(f"no webhook endpoint for source {source}")
        return _endpoint(r)

    async def list(self) -> list[Endpoint]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.webhook_endpoints).order_by(t.webhook_endpoints.c.source))).all()
        return [_endpoint(r) for r in rows]

    async def remove(self, source: str) -> None:
        c = t.webhook_endpoints.c
        async with self.db.write() as conn:
            res = await conn.execute(delete(t.webhook_endpoints).where(c.source == source))
        if not res.rowcount:
            raise NotFound(f"no webhook endpoint for source {source}")

    async def counts(self) -> dict[str, dict[str, int]]:
        """Outbox rows per source and state (`postroom webhook list`)."""
        o = t.webhook_outbox.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(o.source, o.state, func.count()).group_by(o.source, o.state))).all()
        out: dict[str, dict[str, int]] = {}
        for source, state, n in rows:
            out.setdefault(source, {})[state] = int(n)
        return out
