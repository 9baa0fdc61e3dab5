"""The optional second factor for webmail sign-in: TOTP secrets (RFC 6238), one-time recovery codes, pending sign-ins.

Implementation notes
- A secret is made pending by `begin` and takes effect only when `confirm` is given a code
  it generates (so a mistyped or unscanned secret never locks anyone out).
- RFC 6238 §5.2: a code is accepted for the current 30-second step and one step either side
  (clock skew), and never twice: the accepted step is stored and a compare-and-set
  (`last_step < step`) accepts each step at most once, across every node sharing the
  database. An older step than one already accepted is refused too.
- Recovery codes are 80 random bits each; only their SHA-256 is kept (a slow hash is not
  needed for secrets that cannot be guessed), and a code is spent by the same kind of
  compare-and-set (`used_at IS NULL`).
- A pending sign-in (password right, code not yet given) is a row found by the SHA-256 of a
  random token the browser holds, like a web session (websessions.py).
- Throttling the guesses is the caller's job (mailserver.auth uses the login throttle).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyotp
from sqlalchemy import and_, delete, insert, or_, select, update

from . import schema as t
from .db import Database
from .directory import utcnow
from .errors import AlreadyExists
from .websessions import token_hash

RECOVERY_CODES = 10  # issued at enrolment; a new set replaces the old
RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters
MAX_CODE_CHARS = 64  # a longer "code" is refused without work
SKEW_STEPS = 1  # RFC 6238 §5.2: one time step either side
CHALLENGE_BYTES = 32


@dataclass(frozen=True)
class TotpState:
    secret: str
    confirmed: bool


def _recovery_hash(code: str) -> bytes:
    return hashlib.sha256(code.encode("ascii")).digest()


def _normal_recovery(code: str) -> str | None:
    """A recovery code as stored (lower case, no dashes or spaces), or None when it cannot be one."""
    s = code.replace("-", "").replace(" ", "").lower()
    if len(s) != RECOVERY_CODE_BYTES * 8 // 5 or not s.isascii() or not s.isalnum():
        return None
    return s


def looks_like_code(text: str) -> bool:
    """Whether `text` has the shape of a TOTP code or a recovery code (else it may be a password)."""
    s = text.replace(" ", "")
    return (len(s) == 6 and s.isascii() and s.isdigit()) or _normal_recovery(s) is not None


def _new_recovery_code() -> str:
    s = base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode("ascii").lower()
    return "-".join(s[i:i + 4] for i in range(0, len(s), 4))


def provisioning_uri(secret: str, address: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans (Key Uri Format)."""
    return pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name=issuer)


class SecondFactors:
    """TOTP and recovery codes of the accounts, in the central database; `clock` is passed in."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def state(self, account_id: int) -> TotpState | None:
        c = t.totp_secrets.c
        async with self.db.read() as conn:
            r = (await conn.execute(select(c.secret, c.confirmed_at).where(c.account_id == account_id))).first()
        return None if r is None else TotpState(r.secret, r.confirmed_at is not None)

    async def enrolled(self, account_id: int) -> bool:
        st = await self.state(account_id)
        return st is not None and st.confirmed

    async def begin(self, account_id: int) -> str:
        """A new pending secret (base32, 160 bits) for the account; AlreadyExists when one is in force."""
        secret = pyotp.random_base32()
        c = t.totp_secrets.c
        async with self.db.write() as conn:
            r = (await conn.execute(select(c.confirmed_at).where(c.account_id == account_id))).first()
            if r is not None and r.confirmed_at is not None:
                raise AlreadyExists("a second factor is already in force")
            await conn.execute(delete(t.totp_secrets).where(c.account_id == account_id))
            await conn.execute(insert(t.totp_secrets).values(account_id=account_id, secret=secret,
                                                             created_at=self.clock()))
        return secret

    async def confirm(self, account_id: int, code: str) -> list[str] | None:
        """Put the pending secret in force when `code` is right: the new recovery codes (shown once), else None."""
        st = await self.state(account_id)
        if st is None or st.confirmed or not await self._take_step(account_id, st.secret, code, confirmed=False):
            return None
        async with self.db.write() as conn:
            await conn.execute(update(t.totp_secrets).where(t.totp_secrets.c.account_id == account_id)
                               .values(confirmed_at=self.clock()))
        return await self.new_recovery_codes(account_id)

    async def verify(self, account_id: int, code: str) -> bool:
        """Whether `code` is a current TOTP code not used before, or an unused recovery code (then spent)."""
        code = (code or "").strip()
        if not code or len(code) > MAX_CODE_CHARS:
            return False
        st = await self.state(account_id)
        if st is None or not st.confirmed:
            return False
        if code.isascii() and code.replace(" ", "").isdigit():
            return await self._take_step(account_id, st.secret, code, confirmed=True)
        return await self._spend_recovery(account_id, code)

    async def _take_step(self, account_id: int, secret: str, code: str, *, confirmed: bool) -> bool:
        code = code.replace(" ", "")
        totp = pyotp.TOTP(secret)
        if len(code) != totp.digits or not code.isascii() or not code.isdigit():
            return False
        now = self.clock()
        here = totp.timecode(now)
        step = next((s for s in range(here - SKEW_STEPS, here + SKEW_STEPS + 1)
                     if hmac.compare_digest(totp.generate_otp(s), code)), None)
        if step is None:
            return False
        c = t.totp_secrets.c
        async with self.db.write() as conn:
            res = await conn.execute(update(t.totp_secrets).where(and_(
                c.account_id == account_id, c.secret == secret,
                c.confirmed_at.is_not(None) if confirmed else c.confirmed_at.is_(None),
                or_(c.last_step.is_(None), c.last_step < step))).values(last_step=step))
        return res.rowcount == 1

    async def _spend_recovery(self, account_id: int, code: str) -> bool:
        norm = _normal_recovery(code)
        if norm is None:
            return False
        c = t.recovery_codes.c
        async with self.db.write() as conn:
            res = await conn.execute(update(t.recovery_codes).where(and_(
                c.account_id == account_id, c.code_hash == _recovery_hash(norm), c.used_at.is_(None)))
                .values(used_at=self.clock()))
        return res.rowcount == 1

    async def new_recovery_codes(self, account_id: int) -> list[str]:
        """A fresh set of recovery codes replacing the old ones; returned once, kept only as hashes."""
        codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
        async with self.db.write() as conn:
            await conn.execute(delete(t.recovery_codes).where(t.recovery_codes.c.account_id == account_id))
            await conn.execute(insert(t.recovery_codes), [
                {"account_id": account_id, "code_hash": _recovery_hash(_normal_recovery(c))} for c in codes])
        return codes

    async def recovery_codes_left(self, account_id: int) -> int:
        c = t.recovery_codes.c
        async with self.db.read() as conn:
            rows = (await conn.execute(select(c.id).where(and_(c.account_id == account_id,
                                                               c.used_at.is_(None))))).all()
        return len(rows)

    async def disable(self, account_id: int) -> None:
        """Remove the second factor and its recovery codes."""
        async with self.db.write() as conn:
            await conn.execute(delete(t.totp_secrets).where(t.totp_secrets.c.account_id == account_id))
            await conn.execute(delete(t.recovery_codes).where(t.recovery_codes.c.account_id == account_id))

    # --- pending sign-ins ------------------------------------------------------------

    async def challenge(self, account_id: int, *, lifetime: timedelta) -> str:
        """A pending sign-in for the account: the token for the browser (only its hash is kept)."""
        raw = secrets.token_bytes(CHALLENGE_BYTES)
        now = self.clock()
        async with self.db.write() as conn:
            await conn.execute(delete(t.second_factor_challenges)
                               .where(t.second_factor_challenges.c.expires_at <= now))
            await conn.execute(insert(t.second_factor_challenges).values(
                token_hash=hashlib.sha256(raw).digest(), account_id=account_id, expires_at=now + lifetime))
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    async def challenged(self, token: str) -> int | None:
        """The account a live pending sign-in is for, or None."""
        h = token_hash(token or "")
        if h is None:
            return None
        c = t.second_factor_challenges.c
        async with self.db.read() as conn:
            r = (await conn.execute(select(c.account_id, c.expires_at).where(c.token_hash == h))).first()
        if r is None:
            return None
        expires = r.expires_at if r.expires_at.tzinfo else r.expires_at.replace(tzinfo=timezone.utc)
        return r.account_id if expires > self.clock() else None

    async def end_challenges(self, account_id: int) -> None:
        """End every pending sign-in of the account (its password changed)."""
        async with self.db.write() as conn:
            await conn.execute(delete(t.second_factor_challenges)
                               .where(t.second_factor_challenges.c.account_id == account_id))

    async def end_challenge(self, token: str) -> None:
        h = token_hash(token or "")
        if h is not None:
            async with self.db.write() as conn:
                await conn.execute(delete(t.second_factor_challenges)
                                   .where(t.second_factor_challenges.c.token_hash == h))
