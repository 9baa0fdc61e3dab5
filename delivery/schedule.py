"""The outbound retry schedule as pure functions: when to try again, when to warn, when to give up.

Implementation notes
- All datetimes are timezone-aware; a naive one is a bug and raises ValueError.
- `attempts` counts delivery attempts already made. After the k-th failed
  attempt the next one is `delays[k-1]` later, then every `repeat_every`,
  never later than `first_seen + give_up_after`: the last try lands on the
  expiry instant, and a failure at or after expiry ends the message (bounce).
- RFC 5321 §4.5.4.1 suggests retries at least 30 minutes apart and a give-up
  time of 4–5 days. The default's first quick steps (1, 5, 15 min) are
  shorter on purpose: most failures between city and district servers are
  brief link cuts. After them the steady interval is 2 h, the horizon 5 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["RetryPolicy", "DEFAULT_POLICY", "next_attempt", "expires_at", "should_warn_delay", "classify"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Back-off steps, the steady retry interval, the give-up horizon and the delay-warning age."""

    delays: tuple[timedelta, ...] = (
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(hours=1),
    )
    repeat_every: timedelta = timedelta(hours=2)
    give_up_after: timedelta = timedelta(days=5)
    warn_after: timedelta = timedelta(hours=4)

    def __post_init__(self) -> None:
        if any(d <= timedelta(0) for d in (*self.delays, self.repeat_every, self.give_up_after)):
            raise ValueError("retry delays must be positive")
        if self.warn_after < timedelta(0):
            raise ValueError("warn_after must not be negative")


DEFAULT_POLICY = RetryPolicy()


def _aware(*values: datetime) -> None:
    for v in values:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("schedule needs timezone-aware datetimes")


def expires_at(first_seen: datetime, policy: RetryPolicy = DEFAULT_POLICY) -> datetime:
    """The instant after which the message is bounced (also the DSN Will-Retry-Until, RFC 3464 §2.3.9)."""
    _aware(first_seen)
    return first_seen + policy.give_up_after


def next_attempt(
    first_seen: datetime,
    attempts: int,
    now: datetime,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> datetime | None:
    """When to try next after `attempts` attempts (the last one at `now`); None = expired, bounce."""
    _aware(first_seen, now)
    if attempts < 0:
        raise ValueError("attempts must not be negative")
    deadline = expires_at(first_seen, policy)
    if now >= deadline:
        return None
    if attempts == 0:
        return max(now, first_seen)
    step = policy.delays[attempts - 1] if attempts <= len(policy.delays) else policy.repeat_every
    return min(now + step, deadline)


def should_warn_delay(
    first_seen: datetime,
    now: datetime,
    warned: bool,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> bool:
    """Send one "delayed" DSN (RFC 3464 Action: delayed) once mail has waited `warn_after`."""
    _aware(first_seen, now)
    if warned:
        return False
    return first_seen + policy.warn_after <= now < expires_at(first_seen, policy)


Outcome = Literal["ok", "temp", "perm"]


def classify(code: int) -> Outcome:
    """Classify a remote SMTP reply code (RFC 5321 §4.2.1): 2yz ok, 4yz temp, 5yz perm.

    Anything else (a 1yz/3yz where a final reply was due, or garbage) is a
    protocol error on the remote side; it is retried rather than bounced.
    """
    if 200 <= code <= 299:
        return "ok"
    if 500 <= code <= 599:
        return "perm"
    return "temp"
