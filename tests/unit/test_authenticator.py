"""The Authenticator's slots with a directory that answers when the test says: guesses in flight, hang-ups, sharing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from mailboxes import schema as t
from mailboxes.attempts import LoginAttempts
from mailboxes.model import Account, Credential, Role, Verified
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from mailserver.auth import Authenticator, AuthFailed, AuthThrottled
from tests.protocol.smtp.support import wait_for

ALICE = Account(1, "alice@x.test", "", None, None, Role.USER, 0, 0, True)


class HeldDirectory:
    """check_password waits until released; counts the checks begun. Only the right password succeeds."""

    def __init__(self) -> None:
        self.begun = 0
        self.release = asyncio.Event()

    async def check_password(self, address: str, password: str) -> Verified | None:
        self.begun += 1
        await self.release.wait()
        if password == "right":
            return Verified(ALICE, Credential(1, ALICE.address, None, "$h1"))
        return None

    async def credential_account(self, cred: Credential) -> Account | None:
        return ALICE if cred.hash == "$h1" else None

    async def audit_soon(self, actor: str, action: str, target: str = "", **detail) -> None:
        self.audited = [*getattr(self, "audited", []), (actor, action, target)]


@pytest.fixture
async def attempts(tmp_path):
    """The throttle's rows in a fresh SQLite directory database."""
    mb = await open_mailboxes(StorageConfig(url=f"sqlite:///{tmp_path}/postroom.db"))
    yield LoginAttempts(mb.router.central)
    await mb.close()


async def _in_flight(attempts: LoginAttempts) -> int:
    async with attempts.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(t.login_attempts)
                                   .where(t.login_attempts.c.failed.is_(False)))).scalar_one()


async def _outcome(task: asyncio.Task) -> str:
    try:
        await task
        return "ok"
    except AuthFailed:
        return "failed"
    except AuthThrottled:
        return "throttled"


@pytest.mark.slow
async def test_parallel_guesses_beyond_the_limit_wait_and_are_refused(attempts):
    d = HeldDirectory()
    auth = Authenticator.create(d, max_failures=5, attempts=attempts)
    tasks = [asyncio.create_task(auth.login("alice@x.test", f"guess-{i}", ip="192.0.2.1", protocol="t"))
             for i in range(30)]
    await wait_for(lambda: d.begun == 5, what="five checks to begin")
    await wait_for(lambda: sum(len(q) for q in auth._waiters.values()) == 25, what="the other 25 to wait")
    assert d.begun == 5
    d.release.set()
    outcomes = [await _outcome(t) for t in tasks]
    assert outcomes.count("failed") == 5 and outcomes.count("throttled") == 25 and d.begun == 5


async def test_same_credentials_share_one_check_and_then_the_cache(attempts):
    d = HeldDirectory()
    auth = Authenticator.create(d, max_failures=2, attempts=attempts)
    tasks = [asyncio.create_task(auth.login("alice@x.test", "right", ip="192.0.2.1", protocol="t"))
             for _ in range(10)]
    await wait_for(lambda: d.begun == 1, what="the check to begin")
    d.release.set()
    assert [await _outcome(t) for t in tasks] == ["ok"] * 10 and d.begun == 1
    assert (await auth.login("Alice@x.test ", "right", ip="192.0.2.9", protocol="t")) == ALICE
    assert d.begun == 1  # from the cache


async def test_a_hang_up_counts_as_a_failure_and_a_queued_one_loses_no_turn(attempts):
    d = HeldDirectory()
    auth = Authenticator.create(d, max_failures=2, attempts=attempts)
    first = asyncio.create_task(auth.login("alice@x.test", "a", ip="192.0.2.1", protocol="t"))
    await wait_for(lambda: d.begun == 1, what="the first check")
    second = asyncio.create_task(auth.login("bob@x.test", "b", ip="192.0.2.1", protocol="t"))
    await wait_for(lambda: d.begun == 2, what="the second check")
    queued = asyncio.create_task(auth.login("carol@x.test", "c", ip="192.0.2.1", protocol="t"))
    last = asyncio.create_task(auth.login("dave@x.test", "right", ip="192.0.2.1", protocol="t"))
    await wait_for(lambda: sum(len(q) for q in auth._waiters.values()) == 2, what="two to wait")
    queued.cancel()  # a client waiting for a slot hangs up: nothing counted, nobody loses a turn
    first.cancel()  # a client hangs up mid-check: a failure
    with pytest.raises(asyncio.CancelledError):
        await first
    seen = await auth.throttle.verdict("192.0.2.1")
    assert seen.wait is None and seen.busy == ("ip", "192.0.2.1")  # one failure + one check in flight
    assert d.begun == 2  # dave still waits
    d.release.set()
    assert await _outcome(second) == "failed"
    assert await _outcome(last) == "throttled"  # two failures now: the address is blocked
    assert not auth._waiters and not auth._checks and await _in_flight(attempts) == 0
