"""A fault-injecting TCP proxy for the city-district link: delay, cut mid-transfer, refuse connections."""

from __future__ import annotations

import asyncio
import contextlib


class FaultyLink:
    """Forwards 127.0.0.1:<port> to a target; faults are switched on and off by the test.

    - `delay`: seconds added before each forwarded chunk, both ways (a slow WAN).
    - `cut_after(n, times)`: the next `times` connections are aborted (RST) once the
      client has sent `n` bytes, forwarding only what came before: with a message
      larger than the envelope, that is in the middle of DATA (TLS or not).
    - `refuse()` / `restore()`: stop listening (connection refused) and listen again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.delay = 0.0
        self._cut_bytes = 0
        self._cuts_left = 0
        self.cuts = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    def cut_after(self, nbytes: int, times: int = 1) -> None:
        self._cut_bytes, self._cuts_left = nbytes, times

    async def close(self) -> None:
        await self.refuse()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        cut = None
        if self._cuts_left > 0:
            self._cuts_left -= 1
            cut = self._cut_bytes
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.transport.abort()
            return
        done = asyncio.Event()

        async def pump(reader, writer, limit):
            sent = 0
            try:
                while not done.is_set():
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    if limit is not None and sent + len(chunk) >= limit:
                        writer.write(chunk[: max(0, limit - sent)])
                        with contextlib.suppress(ConnectionError):
                            await writer.drain()
                        self.cuts += 1
                        cw.transport.abort()
                        sw.transport.abort()
                        break
                    sent += len(chunk)
                    writer.write(chunk)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                done.set()
                for w in (cw, sw):
                    w.close()

        tasks = [asyncio.create_task(pump(cr, sw, cut)), asyncio.create_task(pump(sr, cw, None))]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
