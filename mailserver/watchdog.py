"""Event-loop watchdog: logs every stall of the shared event loop over a threshold, naming the session and command that held it.

Implementation notes
- One loop serves every SMTP and IMAP session, so a command that computes for 100 ms delays
  everyone by 100 ms. A heartbeat callback on the loop runs every ``TICK_SECONDS`` and measures
  its own lateness, so no stall goes unmeasured. A daemon thread watches the same deadline and,
  while the loop is late, notes what it is running: the current task's name (sessions name their
  task after the command in hand with :func:`activity`: session id and command name, never
  arguments, which may hold passwords; SMTP sessions are named by listener and client address;
  an unnamed task is shown by its coroutine) and the innermost frame of our own code (``smtp_DATA``, ``_header``).
  The heartbeat then logs the stall with its length; one still going after ``LONG_STALL``
  seconds is logged by the thread at once too.
- Reading the current task and the loop thread's frame from another thread is a dictionary
  lookup under the GIL; nothing on the loop is touched from the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger("postroom.watchdog")

STALL_SECONDS = 0.1  # a loop stall longer than this is logged
TICK_SECONDS = 0.02  # heartbeat period
LONG_STALL = 2.0  # a stall still going after this is reported while it lasts
UNSEEN = "unseen (the GIL was held throughout: C code or garbage collection)"
_OUR_CODE = tuple(os.sep + p + os.sep for p in ("mailserver", "mailboxes", "delivery", "webmail", "bridges"))


@dataclass(frozen=True)
class Stall:
    """One stall: how long the loop did not run callbacks, and what held it."""

    seconds: float
    task: str
    where: str


@contextlib.contextmanager
def activity(label: str) -> Iterator[None]:
    """Name the current task ``label`` while the block runs (e.g. ``imap session=ab12 command=LIST``)."""
    task = asyncio.current_task()
    if task is None:
        yield
        return
    before = task.get_name()
    task.set_name(label)
    try:
        yield
    finally:
        task.set_name(before)


class Watchdog:
    """Watches one event loop; a Service for the composition root (``close()`` stops it)."""

    name = "watchdog"

    def __init__(self, threshold: float = STALL_SECONDS, tick: float = TICK_SECONDS) -> None:
        self.threshold = threshold
        self.tick = tick
        self.stalls: deque[Stall] = deque(maxlen=256)  # the latest, for tests and diagnostics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._due = time.monotonic() + tick  # when the next heartbeat should run
        self._culprit: tuple[str, str] | None = None  # what the thread saw running during the current stall
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watchdog:
        """Start watching the running loop (call from the loop's thread)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._due = time.monotonic() + self.tick
        self._handle = self._loop.call_later(self.tick, self._heartbeat)
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()
        return self

    async def close(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        late = now - self._due
        if late > self.threshold:  # measured on the loop itself: no stall goes unseen
            culprit, self._culprit = self._culprit, None
            self._report(late, culprit or (UNSEEN, "?"))
        self._due = now + self.tick
        assert self._loop is not None
        self._handle = self._loop.call_later(self.tick, self._heartbeat)

    # --- the watching thread: says what held the loop, while it is held -------------------------

    def _watch(self) -> None:
        poll = min(self.tick, self.threshold / 4)
        reported_long = 0.0
        while not self._stop.wait(poll):
            due = self._due
            late = time.monotonic() - due
            if late > self.threshold and self._culprit is None:
                self._culprit = self._what_runs()
            if late > LONG_STALL and reported_long != due:
                reported_long = due
                log.warning("event loop stalled for %.1f s so far by %s (%s)", late, *(self._culprit or (UNSEEN, "?")))

    def _what_runs(self) -> tuple[str, str]:
        task = asyncio.current_task(self._loop) if self._loop is not None else None
        name = task.get_name() if task is not None else "a callback outside any task"
        if task is not None and name.startswith("Task-"):  # unnamed: say what it runs
            name += f" ({getattr(task.get_coro(), '__qualname__', '?')})"
        frame = sys._current_frames().get(self._loop_thread)
        where = "?"
        while frame is not None:
            path = frame.f_code.co_filename
            if any(p in path for p in _OUR_CODE):
                mod = path.rsplit(os.sep, 2)
                where = f"{'/'.join(mod[-2:])}:{frame.f_lineno} {frame.f_code.co_name}"
                break
            frame = frame.f_back
        return name, where

    def _report(self, seconds: float, culprit: tuple[str, str]) -> None:
        if seconds <= self.threshold:
            return
        self.stalls.append(Stall(seconds, *culprit))
        log.warning("event loop stalled %d ms by %s (%s)", seconds * 1000, *culprit)


async def start(ctx: object) -> list[Watchdog]:
    """Start the watchdog on the running loop (a starter for the composition root)."""
    return [Watchdog().start()]
