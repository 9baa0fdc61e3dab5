"""A district's record of fetched messages (pull mode): found by UID, or by digest across a UIDVALIDITY change; per upstream; pruned; and pull routes kept beside SMTP routes."""

from __future__ import annotations

import pytest

from delivery.routes import PULL, RouteError, Routes
from mailboxes.pulled import KEEP_DAYS, PullRecords
from tests.support.clock import Clock


async def test_seen_by_uid_or_by_digest_after_a_uidvalidity_change(mb):
    clock = Clock()
    rec = PullRecords(mb.router.central, "pull@city.test:993", clock=clock)
    other = PullRecords(mb.router.central, "pull@elsewhere.test:993", clock=clock)
    assert not await rec.seen(17, 5, "d" * 64)
    await rec.record(17, 5, "d" * 64)
    await rec.record(17, 5, "d" * 64)  # recording twice (a retried round) is harmless
    assert await rec.seen(17, 5, "x" * 64)  # the same UID in the same UIDVALIDITY
    assert await rec.seen(18, 1, "d" * 64)  # renumbered after a UIDVALIDITY change: the digest still matches
    assert not await rec.seen(18, 5, "x" * 64)  # a new mailbox's UID 5 is another message
    assert not await other.seen(17, 5, "d" * 64)  # another upstream's records are its own
    clock.move(days=KEEP_DAYS + 1)
    await rec.record(18, 6, "e" * 64)
    assert await rec.prune() == 1
    assert not await rec.seen(17, 5, "d" * 64) and await rec.seen(18, 6, "e" * 64)


async def test_a_pull_route_has_no_smtp_target_and_an_smtp_route_replaces_it(mb):
    routes = Routes(mb.router.central)
    await routes.add_pull("District.test", "Pull-D@city.test", "s3cret")
    [r] = await routes.list()
    assert (r.domain, r.kind, r.auth_user, r.auth_secret) == ("district.test", PULL, "pull-d@city.test", "s3cret")
    assert (await routes.pull_route("district.test")).auth_user == "pull-d@city.test"
    with pytest.raises(RouteError) as exc:
        await routes.targets("district.test")  # never dialled: held for the district
    assert not exc.value.permanent
    await routes.add("district.test", "10.0.0.3:25")
    routes._cache = None
    assert await routes.pull_route("district.test") is None
    assert [t.host for t in await routes.targets("district.test")] == ["10.0.0.3"]
