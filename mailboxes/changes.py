"""The in-process change bus: commit first, then broadcast folder changes to IMAP IDLE and the webmail.

It also carries wake-ups: `wake(topic)` after committing work a background worker takes (new
workflow events) wakes that worker here and, through FanoutBus (SQLite workers) or a NOTIFY in
the committing transaction (pgbus, PostgreSQL nodes), in every other process, so a batch posted
to one worker is delivered by all of them, not by that one alone while the others sleep.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from .model import FolderRef

MAX_PENDING_EVENTS = 1000  # per listener; a slow listener loses events, then resyncs from MODSEQ
# Events after which a listener must look the folder and its rights up again (deleted or
# renamed; its ACL changed). Counted per listener, so none is lost when the queue is full.
IDENTITY_KINDS = frozenset({"folder", "acl"})
WAKE = "*wake"  # where a change carries its partition, a wake-up carries this (no partition is named so)


@dataclass(frozen=True)
class FolderChanged:
    """Something in a folder changed; listeners ask the store what (changes since their MODSEQ)."""

    folder: FolderRef
    highestmodseq: int
    kind: str  # "append" | "flags" | "expunge" | "folder" | "acl"


class Listener:
    def __init__(self, bus: "ChangeBus", key: object) -> None:
        self._bus = bus
        self._key = key
        self.queue: asyncio.Queue[FolderChanged] = asyncio.Queue(MAX_PENDING_EVENTS)
        self.identity_events = 0  # IDENTITY_KINDS events seen so far

    async def get(self) -> FolderChanged:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._listeners[self._key].discard(self)


class ChangeBus:
    """Listeners subscribe to a folder (or an account: key (partition, 'account', id))."""

    def __init__(self) -> None:
        self._listeners: dict[object, set[Listener]] = defaultdict(set)
        self._wakers: dict[str, list[Callable[[], None]]] = defaultdict(list)

    def listen(self, key: object) -> Listener:
        lst = Listener(self, key)
        self._listeners[key].add(lst)
        return lst

    def publish(self, key: object, event: FolderChanged) -> None:
        for lst in list(self._listeners.get(key, ())):
            if event.kind in IDENTITY_KINDS:
                lst.identity_events += 1
            try:
                lst.queue.put_nowait(event)
            except asyncio.QueueFull:
                pass  # the listener resyncs from MODSEQ when it next looks

    def keys(self) -> list[object]:
        """The keys someone listens to now."""
        return [k for k, v in self._listeners.items() if v]

    def listeners(self, key: object) -> int:
        return len(self._listeners.get(key, ()))

    def on_wake(self, topic: str, wake: Callable[[], None]) -> None:
        """Call `wake` (cheap, never blocking: a worker's poke) when work on `topic` was committed."""
        self._wakers[topic].append(wake)

    def wake(self, topic: str) -> None:
        """Work on `topic` was committed: wake its workers in this process (FanoutBus: in the siblings too)."""
        self.wake_here(topic)

    def wake_here(self, topic: str) -> None:
        for wake in list(self._wakers.get(topic, ())):
            wake()
