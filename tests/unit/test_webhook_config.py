"""The [webhooks] keys: defaults build a sender; a lease no longer than the timeout, or a zero limit, is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridges import webhooks
from mailboxes.db import open_database
from mailserver import config


def test_defaults_build_a_bounded_sender(tmp_path):
    cfg = config.build({"webhooks": {"timeout": 5, "lease": 20, "concurrency": 3}})
    db = open_database(f"sqlite:///{tmp_path}/x.db")
    s = webhooks.build(db, cfg)
    assert (s.timeout, s.concurrency, s.outbox.lease, s.allow_plain_http) == (5.0, 3, timedelta(seconds=20), False)
    assert s.backoff == webhooks.Backoff(timedelta(seconds=10), timedelta(hours=1), timedelta(days=3))


@pytest.mark.parametrize("raw, problem", [
    ({"timeout": 60, "lease": 60}, "[webhooks] lease: must be longer than [webhooks] timeout"),
    ({"concurrency": 0}, "[webhooks] concurrency: must be at least 1"),
    ({"retry_base": 0}, "[webhooks] retry_base: must be at least 1"),
    ({"allow_plain_http": "yes"}, "[webhooks] allow_plain_http: expected true or false, got 'yes'"),
])
def test_bad_values_are_refused(raw, problem):
    with pytest.raises(config.ConfigError) as exc:
        config.build({"webhooks": raw})
    assert exc.value.problems == [problem]
