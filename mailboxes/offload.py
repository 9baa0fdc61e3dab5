"""CPU-heavy work (large MIME parses, DKIM signing and verification) off the event loop, a bounded number at a time.

One event loop serves every session (design.md): work that may take longer than a
few milliseconds runs in the default thread pool, and at most CPU_SLOTS such
jobs run at once per loop, so a burst of large messages queues here instead of
taking every thread (and the memory of every parse) at the same moment.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CPU_SLOTS = max(1, os.cpu_count() or 1)  # concurrent off-loop CPU jobs per event loop
INLINE_BELOW = 64 * 1024  # messages smaller than this parse on the loop (a thread hop costs more)

_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


def _semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _slots.get(loop)
    if sem is None:
        sem = _slots[loop] = asyncio.Semaphore(CPU_SLOTS)
    return sem


async def offload(fn: Callable[..., T], *args) -> T:
    """Run fn(*args) in a worker thread, at most CPU_SLOTS at a time on this loop."""
    async with _semaphore():
        return await asyncio.to_thread(fn, *args)


async def offload_if_large(size: int, fn: Callable[..., T], *args) -> T:
    """fn(*args) on the loop for small inputs, else through `offload`."""
    if size < INLINE_BELOW:
        return fn(*args)
    return await offload(fn, *args)
