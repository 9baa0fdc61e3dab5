"""Carry change events between the worker processes of one server on SQLite: Unix datagrams, peer to peer.

Implementation notes
- Each worker binds a datagram socket `<dir>/<id>` in a directory that only
  the server's user can enter (the supervisor makes it, mode 0700), so no
  other local user can send to it.
- A change this process commits is published on its own bus, as in one
  process, and sent once to each sibling's socket; an event received from a
  sibling is published on the local bus only and never sent on (nothing loops).
  The store publishes after the commit, so "commit first, then broadcast" holds
  across processes too.
- Sending never waits: a sibling that is gone (restarting) or whose receive
  queue is full loses the datagram. Its IDLE sessions then hear of that folder
  with its next change, and every command resyncs from MODSEQ anyway (the
  same rule as MAX_PENDING_EVENTS in one process).
- Wake-ups (`wake(topic)`, see changes.py) travel the same way, at most one datagram per topic
  and sibling a loop turn: a burst of 1,000 posts sends a few, not 1,000.
- On PostgreSQL LISTEN/NOTIFY (pgbus) carries events between processes and
  nodes; this is for SQLite, where there is no server to carry them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterable

from . import pgbus
from .changes import WAKE, ChangeBus, FolderChanged

log = logging.getLogger(__name__)

MAX_DATAGRAM = 1024  # one event is well under 200 bytes (partition names are short, see partitions._NAME_OK)
MAX_READS_PER_WAKE = 256  # datagrams handled per readable callback, then the loop gets a turn


def encode(sender: str, event: FolderChanged) -> bytes:
    """The pgbus payload format, so one parser (pgbus.parse) reads both."""
    f = event.folder
    return f"{sender}:{f.partition}:{f.id}:{event.highestmodseq}:{event.kind}".encode()


class FanoutBus(ChangeBus):
    """A ChangeBus that also tells sibling processes (their sockets in `directory`) of what it publishes."""

    def __init__(self, directory: str, me: str, siblings: Iterable[str]) -> None:
        super().__init__()
        self.me = me
        self._peers = [os.path.join(directory, s) for s in siblings if s != me]
        self._path = os.path.join(directory, me)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)  # left by this worker's previous life
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self._path)
        self._sock.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = self.dropped = self.received = 0
        self._waking: set[str] = set()  # topics whose wake-up is sent at the end of this loop turn

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def publish(self, key: object, event: FolderChanged) -> None:
        super().publish(key, event)
        if key == event.folder:  # folder events travel (as with pgbus); nothing else is published
            self._send(encode(self.me, event))

    def wake(self, topic: str) -> None:
        self.wake_here(topic)
        if topic in self._waking:
            return
        self._waking.add(topic)
        if self._loop is None:
            self._send_wake(topic)
        else:
            self._loop.call_soon(self._send_wake, topic)

    def _send_wake(self, topic: str) -> None:
        self._waking.discard(topic)
        self._send(f"{self.me}:{WAKE}:{topic}".encode())

    def _send(self, data: bytes) -> None:
        for peer in self._peers:
            try:
                self._sock.sendto(data, peer)
                self.sent += 1
            except OSError:  # gone, restarting or full: see the notes above
                self.dropped += 1

    def _readable(self) -> None:
        for _ in range(MAX_READS_PER_WAKE):
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("change fan-out: %s", exc)
                return
            parsed = pgbus.parse(data.decode("utf-8", "replace"))
            if parsed is None or parsed[0] == self.me:
                log.warning("ignoring malformed change datagram %r", data[:200])
                continue
            self.received += 1
            event = parsed[1]
            if isinstance(event, str):
                self.wake_here(event)  # local workers only: never sent on
            else:
                super().publish(event.folder, event)  # local listeners only: never sent on

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._loop = None
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
