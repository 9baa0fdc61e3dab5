"""delivery.submit.DirectoryCache: answers cached, and concurrent misses of one key sharing one directory query."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from delivery.submit import DirectoryCache


class Directory:
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.gate = asyncio.Event()
        self.fail: set[str] = set()

    async def resolve(self, address: str):
        self.asked.append(address)
        await self.gate.wait()
        if address in self.fail:
            raise RuntimeError("directory away")
        return ("resolution", address)


def _cache() -> tuple[DirectoryCache, Directory]:
    directory = Directory()
    return DirectoryCache(SimpleNamespace(directory=directory, router=SimpleNamespace(central=None))), directory


async def test_a_burst_of_misses_asks_the_directory_once():
    cache, directory = _cache()
    burst = [asyncio.create_task(cache.resolve("Alice@city.test")) for _ in range(50)]
    await asyncio.sleep(0)
    directory.gate.set()
    assert await asyncio.gather(*burst) == [("resolution", "Alice@city.test")] * 50
    assert directory.asked == ["Alice@city.test"]
    assert await cache.resolve("alice@city.test") == ("resolution", "Alice@city.test")  # cached now
    assert directory.asked == ["Alice@city.test"] and not cache._loading


async def test_a_failed_or_cancelled_load_leaves_the_others_to_ask_themselves():
    cache, directory = _cache()
    directory.fail.add("bob@city.test")
    first = asyncio.create_task(cache.resolve("bob@city.test"))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(cache.resolve("bob@city.test")) for _ in range(3)]
    await asyncio.sleep(0)
    directory.gate.set()
    for task in (first, *waiters):
        with pytest.raises(RuntimeError):
            await task  # each sees the directory's error; none is left waiting
    assert not cache._loading
    directory.gate.clear()
    loader = asyncio.create_task(cache.resolve("carol@city.test"))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cache.resolve("carol@city.test"))
    await asyncio.sleep(0)
    loader.cancel()  # the loader's caller went away: its waiter loads for itself
    await asyncio.sleep(0)
    directory.gate.set()
    assert await waiter == ("resolution", "carol@city.test") and loader.cancelled()
    assert directory.asked.count("carol@city.test") == 2 and not cache._loading


async def test_an_answer_in_use_is_loaded_again_before_it_expires_and_never_served_after(monkeypatch):
    import delivery.submit as submit

    now = [1000.0]
    monkeypatch.setattr(submit.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(submit, "REFRESH_AHEAD", (0.6, 0.6))
    cache, directory = _cache()
    ttl = cache._answers.ttl
    directory.gate.set()
    assert await cache.resolve("dan@city.test") == ("resolution", "dan@city.test")
    assert directory.asked == ["dan@city.test"]
    now[0] += ttl * 0.5  # young: from the cache, nothing asked
    assert await cache.resolve("dan@city.test") == ("resolution", "dan@city.test")
    assert directory.asked == ["dan@city.test"] and not cache._loading
    # Due for its refresh: the caller is answered from the cache at once, one load runs behind it.
    directory.gate.clear()
    now[0] += ttl * 0.2
    callers = [await cache.resolve("dan@city.test") for _ in range(20)]
    assert callers == [("resolution", "dan@city.test")] * 20
    await asyncio.sleep(0)  # the refresh's task starts
    assert len(cache._refreshing) == 1 and directory.asked == ["dan@city.test"] * 2  # one load for the twenty
    # The answer expires while that load waits: a caller now waits for it, not for a load of its own.
    now[0] += ttl * 0.4
    waiter = asyncio.create_task(cache.resolve("dan@city.test"))
    await asyncio.sleep(0)
    assert not waiter.done()
    directory.gate.set()
    assert await waiter == ("resolution", "dan@city.test")
    assert directory.asked == ["dan@city.test"] * 2 and not cache._loading and not cache._refreshing
    # A refresh that fails leaves the answer in use until it expires; then a caller meets the error itself.
    directory.fail.add("dan@city.test")
    now[0] += ttl * 0.7
    assert await cache.resolve("dan@city.test") == ("resolution", "dan@city.test")
    await asyncio.gather(*cache._refreshing)
    assert directory.asked == ["dan@city.test"] * 3 and not cache._loading
    now[0] += ttl * 0.31  # past its time: not served any more
    with pytest.raises(RuntimeError):
        await cache.resolve("dan@city.test")
    assert directory.asked == ["dan@city.test"] * 4


async def test_concurrent_usage_misses_share_one_query_and_deliveries_keep_it_true(monkeypatch):
    import delivery.submit as submit

    now = [1000.0]
    monkeypatch.setattr(submit.time, "monotonic", lambda: now[0])
    gate, asked = asyncio.Event(), []

    async def quota(account):
        asked.append(account.id)
        await gate.wait()
        return SimpleNamespace(used_bytes=1000 * len(asked), used_messages=len(asked))
    cache = DirectoryCache(SimpleNamespace(directory=Directory(), store=SimpleNamespace(quota=quota),
                                           router=SimpleNamespace(central=None)))
    li = SimpleNamespace(id=7)
    burst = [asyncio.create_task(cache.usage(li)) for _ in range(20)]  # RCPTs to one person at once
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*burst) == [(1000, 1)] * 20 and asked == [7]
    cache.add_usage([7], 500)  # a delivery wrote 500 octets: no query
    assert await cache.usage(li) == (1500, 2) and asked == [7]
    now[0] += submit.USAGE_SECONDS * 0.95  # usage is not loaded ahead (a load would race such additions)
    await cache.usage(li)
    await asyncio.sleep(0)
    assert asked == [7] and not cache._refreshing
    now[0] += submit.USAGE_SECONDS * 0.1  # expired: asked again
    assert await cache.usage(li) == (2000, 2) and asked == [7, 7]
