"""TOTP second factor and recovery codes in the central database, on SQLite and PostgreSQL: confirm, skew, replay, recovery."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyotp
import pytest
from sqlalchemy import select

from mailboxes import schema as t
from mailboxes.errors import AlreadyExists
from mailboxes.secondfactor import RECOVERY_CODES, SecondFactors
from tests.support.clock import Clock

START = datetime(2026, 12, 4, 9, 0, 10, tzinfo=timezone.utc)  # 10 s into a TOTP step


async def _enrolled(mb, clock):
    acct = await mb.add_account("li@city.test", password="pw")
    sf = SecondFactors(mb.router.central, clock=clock)
    secret = await sf.begin(acct.id)
    assert not await sf.enrolled(acct.id)
    assert await sf.verify(acct.id, pyotp.TOTP(secret).at(clock.now)) is False  # pending: not in force
    return acct, sf, secret


async def test_a_secret_takes_effect_only_when_a_code_confirms_it(mb):
    clock = Clock(START)
    acct, sf, secret = await _enrolled(mb, clock)
    totp = pyotp.TOTP(secret)
    assert await sf.confirm(acct.id, "000000" if totp.at(clock.now) != "000000" else "111111") is None
    codes = await sf.confirm(acct.id, totp.at(clock.now))
    assert codes is not None and len(codes) == RECOVERY_CODES == len(set(codes))
    assert await sf.enrolled(acct.id)
    with pytest.raises(AlreadyExists):
        await sf.begin(acct.id)
    # The code that confirmed is spent: not accepted again at sign-in (RFC 6238 §5.2).
    assert not await sf.verify(acct.id, totp.at(clock.now))
    async with mb.router.central.read() as conn:
        stored = (await conn.execute(select(t.recovery_codes.c.code_hash))).scalars().all()
    assert len(stored) == RECOVERY_CODES and all(c.encode() not in s for c in codes for s in stored)


async def test_codes_one_step_either_side_once_each(mb):
    clock = Clock(START)
    acct, sf, secret = await _enrolled(mb, clock)
    totp = pyotp.TOTP(secret)
    assert await sf.confirm(acct.id, totp.at(clock.now - timedelta(seconds=30))) is not None
    clock.now += timedelta(minutes=5)
    assert not await sf.verify(acct.id, totp.at(clock.now - timedelta(seconds=60)))  # two steps old
    assert not await sf.verify(acct.id, totp.at(clock.now + timedelta(seconds=60)))  # two steps ahead
    assert await sf.verify(acct.id, totp.at(clock.now - timedelta(seconds=30)))  # skew: one step old
    assert not await sf.verify(acct.id, totp.at(clock.now - timedelta(seconds=30)))  # replayed
    assert await sf.verify(acct.id, totp.at(clock.now + timedelta(seconds=30)))  # one step ahead
    assert not await sf.verify(acct.id, totp.at(clock.now))  # older than one already accepted
    clock.now += timedelta(seconds=60)
    assert await sf.verify(acct.id, " " + totp.at(clock.now) + " ")
    for junk in ("", "12345", "1234567", "x" * 100, "１２３４５６"):
        assert not await sf.verify(acct.id, junk)


async def test_recovery_codes_work_once_and_disable_removes_everything(mb):
    clock = Clock(START)
    acct, sf, secret = await _enrolled(mb, clock)
    codes = await sf.confirm(acct.id, pyotp.TOTP(secret).at(clock.now))
    assert await sf.verify(acct.id, codes[0].upper())
    assert not await sf.verify(acct.id, codes[0])
    assert await sf.verify(acct.id, codes[1].replace("-", ""))
    assert await sf.recovery_codes_left(acct.id) == RECOVERY_CODES - 2
    other = await mb.add_account("wang@city.test", password="pw")
    assert not await sf.verify(other.id, codes[2])  # another account's code is nothing
    await sf.disable(acct.id)
    assert not await sf.enrolled(acct.id) and not await sf.verify(acct.id, codes[2])
    assert await sf.recovery_codes_left(acct.id) == 0


async def test_pending_sign_ins_expire_and_end(mb):
    clock = Clock(START)
    acct = await mb.add_account("li@city.test", password="pw")
    sf = SecondFactors(mb.router.central, clock=clock)
    token = await sf.challenge(acct.id, lifetime=timedelta(minutes=5))
    assert await sf.challenged(token) == acct.id
    assert await sf.challenged(token[:-2]) is None and await sf.challenged("") is None
    clock.now += timedelta(minutes=6)
    assert await sf.challenged(token) is None
    clock.now -= timedelta(minutes=6)
    await sf.end_challenge(token)
    assert await sf.challenged(token) is None
    tokens = [await sf.challenge(acct.id, lifetime=timedelta(minutes=5)) for _ in range(2)]
    await sf.end_challenges(acct.id)
    assert [await sf.challenged(x) for x in tokens] == [None, None]
