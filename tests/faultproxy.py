"""A fault-injecting TCP proxy on loopback for multi-site tests and the WAN benchmark.

It stands for a WAN link between two Postrooms: each direction can be delayed (one-way
latency, order kept) and throttled, connections can be reset after a number of bytes
(mid-transfer link faults), and the link can be taken offline (new connections are reset
at once, open ones are cut).  Counters and waiters let tests synchronise on what happened
instead of sleeping.

    proxy = FaultProxy("127.0.0.1", smtp_port, delay=0.150)
    port = await proxy.start()
    proxy.reset_after(4096, direction="up")     # the next connection breaks after 4 KiB
    proxy.set_offline(True)                      # the link goes down
    await proxy.wait_attempts(3)                 # three connection attempts seen since start
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

CHUNK = 64 * 1024  # bytes read per step; also the unit a reset threshold is checked at


@dataclass
class Counters:
    attempts: int = 0          # connections accepted, including ones reset at once while offline
    refused: int = 0           # connections reset at once because the link was offline
    resets: int = 0            # connections cut by reset_after or by going offline
    completed: int = 0         # connections that ended by either side closing normally
    bytes_up: int = 0          # client -> target
    bytes_down: int = 0        # target -> client


@dataclass
class _Fault:
    after: int | None  # cut once this many bytes have passed, or
    direction: str
    times: int
    pattern: bytes = b""  # cut just before these bytes would pass (e.g. a reply the peer must not see)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a link fault looks to the peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One proxied connection: two pumps and the bookkeeping to cut both at once."""
    client: asyncio.StreamWriter
    target: asyncio.StreamWriter
    fault: _Fault | None
    sent: dict = field(default_factory=lambda: {"up": 0, "down": 0})
    tail: bytes = b""  # the last bytes seen in the fault's direction, for a pattern split across reads
    cut: bool = False

    def abort(self) -> None:
        if not self.cut:
            self.cut = True
            _abort(self.client)
            _abort(self.target)


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1",
                 delay: float = 0.0, rate: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.delay = delay          # one-way seconds, each direction
        self.rate = rate            # bytes per second per direction; 0 = unlimited
        self.counters = Counters()
        self.offline = False
        self.port = 0
        self._faults: list[_Fault] = []
        self._links: set[_Link] = set()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for link in list(self._links):
            link.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- faults ---------------------------------------------------------------------------

    def reset_after(self, nbytes: int, *, direction: str = "down", times: int = 1) -> None:
        """Reset each of the next `times` connections once `nbytes` have passed in `direction`
        ("up": client to target, "down": target to client)."""
        if direction not in ("up", "down"):
            raise ValueError(direction)
        self._faults.append(_Fault(nbytes, direction, times))

    def reset_when(self, pattern: bytes, *, direction: str = "down", times: int = 1) -> None:
        """Reset each of the next `times` connections in which `pattern` would pass in `direction`: the bytes
        before it are delivered, the rest are not (say, a 250 after DATA, so the sender retries a message the
        receiver already committed). When the pattern is split across two reads its first part has already
        gone through: nothing is held back, which would stall a protocol waiting for those bytes."""
        if direction not in ("up", "down") or not pattern:
            raise ValueError(direction)
        self._faults.append(_Fault(None, direction, times, pattern))

    def set_offline(self, offline: bool) -> None:
        """Take the link down (open connections are reset, new ones reset at once) or up."""
        self.offline = offline
        if offline:
            for link in list(self._links):
                self.counters.resets += 1
                link.abort()

    def open_connections(self) -> int:
        return len(self._links)

    async def wait_attempts(self, n: int, timeout: float = 30.0) -> None:
        await self._wait(lambda: self.counters.attempts >= n, timeout)

    async def wait_resets(self, n: int, timeout: float = 30.0) -> None:
        await self._wait(lambda: self.counters.resets >= n, timeout)

    async def _wait(self, predicate, timeout: float) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _take_fault(self) -> _Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.times -= 1
        if fault.times <= 0:
            self._faults.pop(0)
        return _Fault(fault.after, fault.direction, 1, fault.pattern)

    # -- proxying -------------------------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.attempts += 1
        if self.offline:
            self.counters.refused += 1
            _abort(writer)
            await self._notify()
            return
        try:
            t_reader, t_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.counters.refused += 1
            _abort(writer)
            await self._notify()
            return
        link = _Link(writer, t_writer, self._take_fault())
        self._links.add(link)
        await self._notify()
        up = asyncio.ensure_future(self._pump(link, reader, t_writer, "up"))
        down = asyncio.ensure_future(self._pump(link, t_reader, writer, "down"))
        self._spawn(self._finish(link, up, down))

    async def _finish(self, link: _Link, up: asyncio.Task, down: asyncio.Task) -> None:
        try:
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            self._links.discard(link)
            if not link.cut:
                self.counters.completed += 1
                for w in (link.client, link.target):
                    with contextlib.suppress(Exception):
                        w.close()
            await self._notify()

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, direction: str) -> None:
        """Read from one side and write to the other `delay` seconds later, in order."""
        loop = asyncio.get_running_loop()
        pending: asyncio.Queue = asyncio.Queue()
        writer_task = asyncio.ensure_future(self._deliver(link, pending, writer))
        try:
            while not link.cut:
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                fault = link.fault
                if fault is not None and fault.direction == direction:
                    room = self._room(link, fault, direction, data)
                    if room is not None:
                        if room > 0:
                            await pending.put((loop.time() + self.delay, data[:room]))
                        await pending.put((loop.time() + self.delay, None))  # cut after these bytes
                        break
                link.sent[direction] += len(data)
                if direction == "up":
                    self.counters.bytes_up += len(data)
                else:
                    self.counters.bytes_down += len(data)
                await pending.put((loop.time() + self.delay, data))
            else:
                return
            await pending.put((loop.time() + self.delay, b""))  # end of stream: half-close
        finally:
            await asyncio.gather(writer_task, return_exceptions=True)

    @staticmethod
    def _room(link: _Link, fault: _Fault, direction: str, data: bytes) -> int | None:
        """How many bytes of `data` pass before the fault cuts the link; None when it does not cut in `data`."""
        if fault.after is not None:
            room = fault.after - link.sent[direction]
            return room if len(data) >= room else None
        seen = link.tail + data
        at = seen.find(fault.pattern)
        link.tail = seen[-(len(fault.pattern) - 1):] if len(fault.pattern) > 1 else b""
        return None if at < 0 else at - (len(seen) - len(data))

    async def _deliver(self, link: _Link, pending: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await pending.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # the simulated wire: latency, not test synchronisation
            if link.cut:
                return
            if data is None:
                self.counters.resets += 1
                link.abort()
                await self._notify()
                return
            if data == b"":
                with contextlib.suppress(Exception):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                return
            if self.rate:
                await asyncio.sleep(len(data) / self.rate)
