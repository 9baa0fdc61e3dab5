"""Retry schedule as a table."""

from datetime import datetime, timedelta, timezone

import pytest

from delivery.schedule import DEFAULT_POLICY, RetryPolicy, classify, expires_at, next_attempt, should_warn_delay

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.mark.parametrize(
    "attempts, last_try, expected",
    [
        (0, 0 * M, 0 * M),  # never tried: due now
        (1, 0 * M, 1 * M),
        (2, 1 * M, 6 * M),
        (3, 6 * M, 21 * M),
        (4, 21 * M, 81 * M),
        (5, 81 * M, 81 * M + 2 * H),
        (9, 10 * H, 12 * H),
        (40, 4 * D + 23 * H, 5 * D),  # clamped: the last try lands on the deadline
        (41, 5 * D, None),  # failed at the deadline: expired, bounce
        (60, 6 * D, None),
    ],
)
def test_next_attempt_table(attempts, last_try, expected):
    got = next_attempt(T0, attempts, T0 + last_try)
    assert got == (None if expected is None else T0 + expected)


def test_custom_policy():
    policy = RetryPolicy(delays=(timedelta(seconds=10),), repeat_every=30 * M, give_up_after=H, warn_after=10 * M)
    assert next_attempt(T0, 1, T0, policy) == T0 + timedelta(seconds=10)
    assert next_attempt(T0, 2, T0 + M, policy) == T0 + 31 * M
    assert next_attempt(T0, 3, T0 + 50 * M, policy) == T0 + H
    assert next_attempt(T0, 4, T0 + H, policy) is None
    assert expires_at(T0, policy) == T0 + H


def test_default_policy_values():
    assert DEFAULT_POLICY.delays == (M, 5 * M, 15 * M, H)
    assert DEFAULT_POLICY.repeat_every == 2 * H and DEFAULT_POLICY.give_up_after == 5 * D


@pytest.mark.parametrize(
    "age, warned, expected",
    [
        (3 * H, False, False),
        (4 * H, False, True),
        (4 * H, True, False),
        (2 * D, False, True),
        (5 * D, False, False),  # expired: the failure DSN replaces the warning
    ],
)
def test_should_warn_delay(age, warned, expected):
    assert should_warn_delay(T0, T0 + age, warned) is expected


def test_naive_datetimes_refused():
    with pytest.raises(ValueError):
        next_attempt(datetime(2024, 5, 1), 1, datetime(2024, 5, 1))
    with pytest.raises(ValueError):
        next_attempt(T0, -1, T0)
    with pytest.raises(ValueError):
        RetryPolicy(delays=(timedelta(0),))


@pytest.mark.parametrize(
    "code, expected",
    [(250, "ok"), (251, "ok"), (421, "temp"), (450, "temp"), (452, "temp"), (550, "perm"), (554, "perm"),
     (354, "temp"), (199, "temp"), (0, "temp"), (600, "temp")],
)  # fmt: skip
def test_classify(code, expected):
    assert classify(code) == expected
