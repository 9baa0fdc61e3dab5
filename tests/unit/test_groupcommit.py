"""Group commit: a lone request is written at once (no batch window), later ones share the next transaction, a failure is isolated."""

from __future__ import annotations

import asyncio

import pytest

from mailboxes.groupcommit import MAX_BATCH, GroupCommitter


class Recorder:
    """An apply function that records its batches and can be held until released."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.started = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        await self.release.wait()
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return [i * 10 for i in items]


async def test_a_lone_request_is_applied_at_once_without_waiting_for_company():
    rec = Recorder(hold=True)
    gc = GroupCommitter(rec)
    task = asyncio.create_task(gc.submit(7))
    for _ in range(3):  # a few turns of the loop, no timer: the commit has already started
        await asyncio.sleep(0)
    assert rec.batches == [[7]]
    rec.release.set()
    assert await task == 70
    await gc.close()


async def test_requests_arriving_during_a_commit_go_together_in_the_next_one():
    rec = Recorder(hold=True)
    gc = GroupCommitter(rec)
    first = asyncio.create_task(gc.submit(1))
    await rec.started.wait()
    later = [asyncio.create_task(gc.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert rec.batches == [[1]]  # they wait for the commit under way, not for a timer
    rec.release.set()
    assert await first == 10 and [await t for t in later] == [20, 30, 40]
    assert rec.batches == [[1], [2, 3, 4]] and gc.batches == 2 and gc.items == 4
    await gc.close()


async def test_a_failing_batch_is_retried_one_by_one_and_only_the_bad_request_fails():
    rec = Recorder(hold=True)
    gc = GroupCommitter(rec)
    first = asyncio.create_task(gc.submit(1))
    await rec.started.wait()
    good, bad = asyncio.create_task(gc.submit(2)), asyncio.create_task(gc.submit(-1))
    await asyncio.sleep(0)
    rec.release.set()
    assert await first == 10 and await good == 20
    with pytest.raises(ValueError):
        await bad
    assert rec.batches == [[1], [2, -1], [2], [-1]]
    await gc.close()


async def test_a_batch_holds_at_most_max_batch_requests():
    rec = Recorder(hold=True)
    gc = GroupCommitter(rec)
    first = asyncio.create_task(gc.submit(0))
    await rec.started.wait()
    rest = [asyncio.create_task(gc.submit(i)) for i in range(1, MAX_BATCH + 2)]
    await asyncio.sleep(0)
    rec.release.set()
    await asyncio.gather(first, *rest)
    assert [len(b) for b in rec.batches] == [1, MAX_BATCH, 1]
    await gc.close()
