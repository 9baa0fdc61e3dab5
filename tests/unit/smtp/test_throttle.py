"""AuthThrottle with a fake clock."""

import pytest

from mailserver.throttle import AuthThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def test_blocks_after_max_failures_and_recovers(clock):
    t = AuthThrottle(clock=clock, max_failures=3, window_s=60)
    for _ in range(2):
        t.record_failure("192.0.2.1", "a@x.test")
        clock.advance(1)
    assert t.check("192.0.2.1", "a@x.test") is None
    t.record_failure("192.0.2.1", "a@x.test")
    wait = t.check("192.0.2.1", "a@x.test")
    assert wait == pytest.approx(58.0)  # the oldest of the three leaves the window at t+60
    clock.advance(57.5)
    assert t.is_blocked("192.0.2.1", None)
    clock.advance(0.5)
    assert t.check("192.0.2.1", "a@x.test") is None


def test_sliding_window_not_fixed_buckets(clock):
    t = AuthThrottle(clock=clock, max_failures=3, window_s=60)
    t.record_failure("192.0.2.1")
    clock.advance(50)
    t.record_failure("192.0.2.1")
    t.record_failure("192.0.2.1")
    assert t.is_blocked("192.0.2.1")
    clock.advance(10)  # the first failure leaves the window
    assert not t.is_blocked("192.0.2.1")


def test_account_key_blocks_from_any_ip(clock):
    t = AuthThrottle(clock=clock, max_failures=3, window_s=60)
    for i in range(3):
        t.record_failure(f"198.51.100.{i}", "Victim@X.test")
    assert t.is_blocked("203.0.113.9", "victim@x.test")
    assert not t.is_blocked("203.0.113.9", "other@x.test")
    assert not t.is_blocked("198.51.100.0", None)


def test_separate_account_limit(clock):
    t = AuthThrottle(clock=clock, max_failures=2, max_account_failures=4, window_s=60)
    for i in range(3):
        t.record_failure(f"198.51.100.{i}", "victim@x.test")
    assert not t.is_blocked("203.0.113.9", "victim@x.test")
    t.record_failure("198.51.100.9", "victim@x.test")
    assert t.is_blocked("203.0.113.9", "victim@x.test")


def test_success_clears_account_not_ip(clock):
    t = AuthThrottle(clock=clock, max_failures=2, window_s=60)
    t.record_failure("192.0.2.1", "a@x.test")
    t.record_failure("192.0.2.1", "a@x.test")
    t.record_success("192.0.2.1", "a@x.test")
    assert not t.is_blocked("192.0.2.2", "a@x.test")
    assert t.is_blocked("192.0.2.1", "b@x.test")


def test_ipv6_keyed_by_slash_64(clock):
    t = AuthThrottle(clock=clock, max_failures=2, window_s=60)
    t.record_failure("2001:db8:1:2::1")
    t.record_failure("2001:db8:1:2:ffff::9")
    assert t.is_blocked("2001:db8:1:2::abcd")
    assert not t.is_blocked("2001:db8:1:3::1")


def test_ipv4_mapped_counts_as_ipv4(clock):
    t = AuthThrottle(clock=clock, max_failures=2, window_s=60)
    t.record_failure("::ffff:192.0.2.7")
    t.record_failure("192.0.2.7")
    assert t.is_blocked("192.0.2.7")


def test_memory_is_bounded(clock):
    t = AuthThrottle(clock=clock, max_failures=3, window_s=60, max_keys=100)
    for i in range(1000):
        t.record_failure(f"10.0.{i // 256}.{i % 256}", f"user{i}@x.test")
    assert len(t) <= 100


def test_expired_keys_are_dropped(clock):
    t = AuthThrottle(clock=clock, max_failures=3, window_s=60)
    for i in range(50):
        t.record_failure(f"10.0.0.{i}", f"u{i}@x.test")
    assert len(t) == 100
    clock.advance(61)
    t.check("10.9.9.9", None)
    assert len(t) == 0


def test_per_key_history_is_bounded(clock):
    t = AuthThrottle(clock=clock, max_failures=3, window_s=60)
    for _ in range(10_000):
        t.record_failure("192.0.2.1")
    assert max(len(v) for v in t._entries.values()) == 3


def test_clock_is_required():
    with pytest.raises(TypeError):
        AuthThrottle()  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        AuthThrottle(clock=lambda: 0.0, max_failures=0)


def test_attempts_in_flight_fill_the_limit_until_they_settle(clock):
    t = AuthThrottle(clock=clock, max_failures=3, window_s=60)
    for _ in range(3):
        assert t.busy_key("192.0.2.1", "a@x.test") is None
        t.begin("192.0.2.1", "a@x.test")
    assert t.busy_key("192.0.2.1", "a@x.test") == ("ip", "192.0.2.1")  # a fourth must wait
    assert t.check("192.0.2.1", "a@x.test") is None  # ... but is not refused yet
    t.end("192.0.2.1", "a@x.test", ok=False)
    assert t.room(("ip", "192.0.2.1")) == 0  # the failure took the slot's place
    t.end("192.0.2.1", "a@x.test", ok=None)  # no answer (an error): freed, not counted
    assert t.room(("ip", "192.0.2.1")) == 1
    t.end("192.0.2.1", "a@x.test", ok=False)
    assert t.room(("ip", "192.0.2.1")) == 1 and t.room(("account", "a@x.test")) == 1
    t.begin("192.0.2.1", "b@x.test")
    t.end("192.0.2.1", "b@x.test", ok=False)
    assert t.room(("ip", "192.0.2.1")) is None and t.check("192.0.2.1") is not None  # blocked


def test_a_success_in_flight_frees_its_slot(clock):
    t = AuthThrottle(clock=clock, max_failures=2, window_s=60)
    t.begin("192.0.2.1", "a@x.test")
    t.begin("192.0.2.1", "b@x.test")
    assert t.busy_key("192.0.2.1", "c@x.test") == ("ip", "192.0.2.1")
    t.end("192.0.2.1", "a@x.test", ok=True)
    assert t.busy_key("192.0.2.1", "c@x.test") is None
