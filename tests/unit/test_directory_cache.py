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
