"""The Authenticator's slots with a directory that answers when the test says: guesses in flight, hang-ups, sharing."""

from __future__ import annotations

import asyncio

import pytest

from mailboxes.model import Account, Credential, Role, Verified
from mailserver.auth import Authenticator, AuthFailed, AuthThrottled

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


async def _settle() -> None:
    for _ in range(20):  # let every ready task run (no timing involved)
        await asyncio.sleep(0)


async def _outcome(task: asyncio.Task) -> str:
    try:
        await task
        return "ok"
    except AuthFailed:
        return "failed"
    except AuthThrottled:
        return "throttled"


async def test_parallel_guesses_beyond_the_limit_wait_and_are_refused():
    d = HeldDirectory()
    auth = Authenticator.create(d, max_failures=5)
    tasks = [asyncio.create_task(auth.login("alice@x.test", f"guess-{i}", ip="192.0.2.1", protocol="t"))
             for i in range(30)]
    await _settle()
    assert d.begun == 5  # the other 25 wait for a slot
    d.release.set()
    outcomes = [await _outcome(t) for t in tasks]
    assert outcomes.count("failed") == 5 and outcomes.count("throttled") == 25 and d.begun == 5


async def test_same_credentials_share_one_check_and_then_the_cache():
    d = HeldDirectory()
    auth = Authenticator.create(d, max_failures=2)
    tasks = [asyncio.create_task(auth.login("alice@x.test", "right", ip="192.0.2.1", protocol="t"))
             for _ in range(10)]
    await _settle()
    d.release.set()
    assert [await _outcome(t) for t in tasks] == ["ok"] * 10 and d.begun == 1
    assert (await auth.login("Alice@x.test ", "right", ip="192.0.2.9", protocol="t")) == ALICE
    assert d.begun == 1  # from the cache


async def test_a_hang_up_counts_as_a_failure_and_a_queued_one_loses_no_turn():
    d = HeldDirectory()
    auth = Authenticator.create(d, max_failures=2)
    first = asyncio.create_task(auth.login("alice@x.test", "a", ip="192.0.2.1", protocol="t"))
    second = asyncio.create_task(auth.login("bob@x.test", "b", ip="192.0.2.1", protocol="t"))
    queued = asyncio.create_task(auth.login("carol@x.test", "c", ip="192.0.2.1", protocol="t"))
    last = asyncio.create_task(auth.login("dave@x.test", "right", ip="192.0.2.1", protocol="t"))
    await _settle()
    assert d.begun == 2
    queued.cancel()  # a client waiting for a slot hangs up: nothing counted, nobody loses a turn
    first.cancel()  # a client hangs up mid-check: a failure
    await _settle()
    assert auth.throttle.room(("ip", "192.0.2.1")) == 0  # one failure + one check in flight (dave waits)
    d.release.set()
    assert await _outcome(second) == "failed"
    assert await _outcome(last) == "throttled"  # two failures now: the address is blocked
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not auth._waiters and not auth._checks and not auth.throttle._in_flight
