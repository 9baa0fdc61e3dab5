"""Measuring helpers for the SMTP/MIME hostile suite: an event-loop lag probe, resident memory, a blocking raw client."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

PAGE = os.sysconf("SC_PAGE_SIZE")
PROBE_INTERVAL = 0.010  # the probe wakes every 10 ms; lag is how late it wakes


def rss_bytes() -> int:
    """Resident set size of this process, after a full garbage collection (/proc/self/statm, field 2)."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@dataclass
class LagProbe:
    """max_lag: the longest wall-clock delay of a tick; max_busy: the most CPU the loop's thread used within one.

    On a loaded machine (several test runs on two cores) the process may simply not
    be scheduled for a while: that shows in max_lag but not in max_busy. A stall the
    server causes itself (work on the loop) shows in both.
    """

    max_lag: float = 0.0
    max_busy: float = 0.0
    ticks: int = 0


@asynccontextmanager
async def loop_lag_probe():
    """Run a task on the current (server's) loop that records the largest delay between its 10 ms ticks."""
    probe = LagProbe()
    loop = asyncio.get_running_loop()

    async def tick():
        while True:
            before, cpu_before = loop.time(), time.thread_time()
            await asyncio.sleep(PROBE_INTERVAL)
            probe.max_lag = max(probe.max_lag, loop.time() - before - PROBE_INTERVAL)
            probe.max_busy = max(probe.max_busy, time.thread_time() - cpu_before)
            probe.ticks += 1

    task = asyncio.create_task(tick())
    try:
        yield probe
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


class BlockingClient:
    """A raw-bytes SMTP client on a plain socket, for use in a worker thread (so the loop serves only the server)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed by the server")
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            lines.append(line.decode("utf-8", "replace").rstrip("\r"))
            if line[3:4] != b"-":
                return int(lines[-1][:3]), lines[-1][4:]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: bytes | str) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def timed(fn):
    """fn() and the seconds it took (for the report line of each case)."""
    t = time.monotonic()
    out = fn()
    return out, time.monotonic() - t
