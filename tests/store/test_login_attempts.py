"""The failed-login throttle on its database rows: windows, keys, attempts in flight, shared by two nodes."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from mailboxes import schema as t
from mailboxes.attempts import LoginAttempts
from mailserver import throttle as throttle_mod
from mailserver.throttle import AuthThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def make(mb, clock, **kw) -> AuthThrottle:
    return AuthThrottle(LoginAttempts(mb.router.central), clock=clock, **kw)


async def blocked(th: AuthThrottle, ip: str, account: str | None = None) -> bool:
    return await th.check(ip, account) is not None


async def test_blocks_after_max_failures_and_recovers(mb, clock):
    th = make(mb, clock, max_failures=3, window_s=60)
    for _ in range(2):
        await th.record_failure("192.0.2.1", "a@x.test")
        clock.advance(1)
    assert await th.check("192.0.2.1", "a@x.test") is None
    await th.record_failure("192.0.2.1", "a@x.test")
    assert await th.check("192.0.2.1", "a@x.test") == pytest.approx(58.0)  # the oldest leaves at t+60
    clock.advance(57.5)
    assert await blocked(th, "192.0.2.1")
    clock.advance(0.5)
    assert await th.check("192.0.2.1", "a@x.test") is None


async def test_sliding_window_not_fixed_buckets(mb, clock):
    th = make(mb, clock, max_failures=3, window_s=60)
    await th.record_failure("192.0.2.1")
    clock.advance(50)
    await th.record_failure("192.0.2.1")
    await th.record_failure("192.0.2.1")
    assert await blocked(th, "192.0.2.1")
    clock.advance(10)  # the first failure leaves the window
    assert not await blocked(th, "192.0.2.1")


async def test_account_key_blocks_from_any_ip_and_has_its_own_limit(mb, clock):
    th = make(mb, clock, max_failures=2, max_account_failures=4, window_s=60)
    for i in range(3):
        await th.record_failure(f"198.51.100.{i}", "Victim@X.test")
    assert not await blocked(th, "203.0.113.9", "victim@x.test")
    await th.record_failure("198.51.100.9", "victim@x.test")
    assert await blocked(th, "203.0.113.9", "victim@x.test")
    assert not await blocked(th, "203.0.113.9", "other@x.test")


async def test_success_clears_account_not_ip(mb, clock):
    th = make(mb, clock, max_failures=2, window_s=60)
    await th.record_failure("192.0.2.1", "a@x.test")
    await th.record_failure("192.0.2.1", "a@x.test")
    await th.record_success("a@x.test")
    assert not await blocked(th, "192.0.2.2", "a@x.test")
    assert await blocked(th, "192.0.2.1", "b@x.test")


async def test_ipv6_by_slash_64_and_ipv4_mapped_as_ipv4(mb, clock):
    th = make(mb, clock, max_failures=2, window_s=60)
    await th.record_failure("2001:db8:1:2::1")
    await th.record_failure("2001:db8:1:2:ffff::9")
    assert await blocked(th, "2001:db8:1:2::abcd")
    assert not await blocked(th, "2001:db8:1:3::1")
    await th.record_failure("::ffff:192.0.2.7")
    await th.record_failure("192.0.2.7")
    assert await blocked(th, "192.0.2.7")


async def test_attempts_in_flight_fill_the_limit_until_they_settle(mb, clock):
    th = make(mb, clock, max_failures=3, window_s=60)
    slots = [await th.begin("192.0.2.1", "a@x.test") for _ in range(3)]
    assert None not in slots
    assert await th.begin("192.0.2.1", "a@x.test") is None  # a fourth must wait ...
    seen = await th.verdict("192.0.2.1", "a@x.test")
    assert seen.wait is None and seen.busy == ("ip", "192.0.2.1")  # ... but is not refused
    await th.end(slots[0], "a@x.test", ok=False)
    assert await th.begin("192.0.2.1", "c@x.test") is None  # the failure took the slot's place
    await th.end(slots[1], "a@x.test", ok=None)  # no answer (an error): freed, not counted
    await th.end(slots[2], "a@x.test", ok=False)
    last = await th.begin("192.0.2.1", "b@x.test")
    assert last is not None
    await th.end(last, "b@x.test", ok=False)
    assert await blocked(th, "192.0.2.1")


async def test_a_success_frees_its_slot_and_clears_the_account(mb, clock):
    th = make(mb, clock, max_failures=2, window_s=60)
    await th.record_failure("192.0.2.9", "a@x.test")
    a = await th.begin("192.0.2.1", "a@x.test")
    assert await th.begin("192.0.2.1", "b@x.test") is not None
    assert await th.begin("192.0.2.1", "c@x.test") is None
    await th.end(a, "a@x.test", ok=True)
    assert (await th.verdict("192.0.2.3", "a@x.test")).account_failures == 0
    assert await th.begin("192.0.2.1", "c@x.test") is not None


async def test_attempts_of_a_dead_process_stop_counting_and_old_rows_are_pruned(mb, clock, monkeypatch):
    th = make(mb, clock, max_failures=2, window_s=60)
    await th.begin("192.0.2.1", "a@x.test")
    await th.begin("192.0.2.1", "b@x.test")  # their process dies: never settled
    for i in range(50):
        await th.record_failure(f"10.0.0.{i}", f"u{i}@x.test")
    assert await th.begin("192.0.2.1", "c@x.test") is None
    clock.advance(throttle_mod.FLIGHT_S + 1)
    slot = await th.begin("192.0.2.1", "c@x.test")
    assert slot is not None
    await th.end(slot, "c@x.test", ok=None)  # prunes (first settle of this process)
    async with mb.router.central.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.login_attempts))).scalar_one() == 0


async def test_two_nodes_count_the_same_guesses(two_stores, clock):
    """Guesses spread over two processes or nodes meet one limit, and a slot taken on one is seen by the other."""
    m1, m2, _ = two_stores
    a, b = make(m1, clock, max_failures=3, window_s=60), make(m2, clock, max_failures=3, window_s=60)
    await a.record_failure("192.0.2.1", "x@city.test")
    await b.record_failure("192.0.2.1", "y@city.test")
    slot = await a.begin("192.0.2.1", "z@city.test")
    assert await b.begin("192.0.2.1", "w@city.test") is None  # node A's attempt in flight fills the limit
    await a.end(slot, "z@city.test", ok=False)
    assert await b.check("192.0.2.1") == pytest.approx(60.0)


async def test_thirty_attempts_begun_at_once_on_two_nodes_admit_exactly_the_limit(two_stores, clock):
    m1, m2, _ = two_stores
    a, b = make(m1, clock, max_failures=5, window_s=60), make(m2, clock, max_failures=5, window_s=60)
    slots = await asyncio.gather(*((a if i % 2 else b).begin("192.0.2.1", f"u{i}@city.test") for i in range(30)))
    assert sum(s is not None for s in slots) == 5
