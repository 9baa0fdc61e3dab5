"""DKIM keys in the central database: our signing keys, and partners' public keys trusted without DNS.

Implementation notes
- Both tables are read often (every outgoing and every signed incoming
  message) and change rarely, so they are cached for KEY_CACHE_SECONDS.
- Our own public keys count as trusted too: mail between two of our nodes,
  or a message that comes back to us, verifies without DNS.
- A trusted key file may hold the TXT record value (`v=DKIM1; k=rsa; p=...`,
  zone-file quoting allowed) or a PEM public key (RFC 6376 §3.6.1).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import and_, insert, select, update

from mailboxes import schema as t
from mailboxes.addresses import normalise_domain
from mailboxes.db import Database
from mailboxes.errors import InvalidInput

from . import dkim

KEY_CACHE_SECONDS = 30.0
DEFAULT_BITS = 2048


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    private_pem: bytes


def public_txt(private_pem: bytes) -> str:
    key = serialization.load_pem_private_key(private_pem, password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def parse_key_file(text: str) -> str:
    """The TXT value for a partner's key given as a TXT value, a zone-file line or a PEM public key."""
    text = text.strip()
    if "BEGIN PUBLIC KEY" in text:
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError as exc:
            raise InvalidInput(f"cannot read the public key: {exc}") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidInput("only RSA DKIM keys are supported")
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
    quoted = re.findall(r'"([^"]*)"', text)
    value = "".join(quoted) if quoted else text
    value = " ".join(value.split())
    if not re.search(r"(^|;)\s*p=[A-Za-z0-9+/=\s]+", value):
        raise InvalidInput("the key file holds neither a DKIM TXT record (p=...) nor a PEM public key")
    return value


class DkimKeys:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.db = db
        self.clock = clock
        self._signing: tuple[float, dict[str, SigningKey]] | None = None
        self._trusted: tuple[float, dict[tuple[str, str], str]] | None = None

    def _forget(self) -> None:
        self._signing = self._trusted = None

    async def generate(self, domain: str, selector: str, bits: int = DEFAULT_BITS) -> tuple[str, str]:
        """Make and store the active signing key of `domain`; returns (record name, TXT value)."""
        domain = normalise_domain(domain)
        name = dkim.dns_record_name(domain, selector)
        # RSA key generation is tens to hundreds of milliseconds of CPU: in a thread, off the event loop.
        pem, txt = await asyncio.to_thread(dkim.generate_key, domain, selector, bits)
        k = t.dkim_keys.c
        async with self.db.write() as conn:
            await conn.execute(update(t.dkim_keys).where(k.domain == domain).values(active=False))
            found = (await conn.execute(select(k.selector).where(and_(k.domain == domain,
                                                                      k.selector == selector)))).first()
            if found:
                await conn.execute(update(t.dkim_keys).where(and_(k.domain == domain, k.selector == selector))
                                   .values(private_pem=pem, active=True, created_at=self.clock()))
            else:
                await conn.execute(insert(t.dkim_keys).values(domain=domain, selector=selector, private_pem=pem,
                                                              active=True, created_at=self.clock()))
        self._forget()
        return name, txt

    async def trust(self, domain: str, selector: str, key_text: str) -> str:
        """Trust a partner's public key for (domain, selector); returns the stored TXT value."""
        domain = normalise_domain(domain)
        dkim.dns_record_name(domain, selector)  # validates the selector
        txt = parse_key_file(key_text)
        k = t.dkim_trust.c
        async with self.db.write() as conn:
            found = (await conn.execute(select(k.domain).where(and_(k.domain == domain,
                                                                    k.selector == selector)))).first()
            if found:
                await conn.execute(update(t.dkim_trust).where(and_(k.domain == domain, k.selector == selector))
                                   .values(public_txt=txt))
            else:
                await conn.execute(insert(t.dkim_trust).values(domain=domain, selector=selector, public_txt=txt,
                                                               created_at=self.clock()))
        self._forget()
        return txt

    async def _load_signing(self) -> dict[str, SigningKey]:
        now = time.monotonic()
        if self._signing is None or now - self._signing[0] > KEY_CACHE_SECONDS:
            k = t.dkim_keys.c
            async with self.db.read() as conn:
                rows = (await conn.execute(select(k.domain, k.selector, k.private_pem)
                                           .where(k.active.is_(True)))).all()
            self._signing = (now, {r.domain: SigningKey(r.domain, r.selector, bytes(r.private_pem)) for r in rows})
        return self._signing[1]

    async def signing_key(self, domain: str) -> SigningKey | None:
        return (await self._load_signing()).get(domain.lower().rstrip("."))

    async def has_signing_keys(self) -> bool:
        return bool(await self._load_signing())

    async def trusted(self) -> dict[tuple[str, str], str]:
        """(domain, selector) -> TXT value: partners' keys and our own public keys."""
        now = time.monotonic()
        if self._trusted is None or now - self._trusted[0] > KEY_CACHE_SECONDS:
            out: dict[tuple[str, str], str] = {}
            async with self.db.read() as conn:
                own = (await conn.execute(select(t.dkim_keys.c.domain, t.dkim_keys.c.selector,
                                                 t.dkim_keys.c.private_pem))).all()
                partners = (await conn.execute(select(t.dkim_trust.c.domain, t.dkim_trust.c.selector,
                                                      t.dkim_trust.c.public_txt))).all()
            for r in own:
                out[(r.domain, r.selector)] = public_txt(bytes(r.private_pem))
            for r in partners:
                out[(r.domain, r.selector)] = r.public_txt
            self._trusted = (now, out)
        return self._trusted[1]


def dns_txt_lookup(timeout: float = 5.0) -> Callable[[str], bytes | None]:
    """A blocking TXT look-up for dkimpy (it runs in a worker thread): None when there is no record."""
    import dns.exception
    import dns.resolver

    def lookup(name: str) -> bytes | None:
        try:
            answer = dns.resolver.resolve(name, "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.DNSException, OSError) as exc:
            raise dkim.KeyLookupError(f"DNS: {exc.__class__.__name__}") from None
        return b"".join(b"".join(r.strings) for r in answer)

    return lookup
