"""Listeners behind a TCP load balancer: a connection from a trusted balancer starts with a PROXY header naming the client.

Implementation notes
- Used for a listener when `[listen] proxy_trusted` names networks, and in
  the worker processes of `postroom serve --workers N` (with no trusted
  sources, each connection is handed on at once). Elsewhere the listeners
  are asyncio's own and nothing here runs.
- Workers share one listening socket per listener (mailserver/workers.py) and
  take turns on it (`Turns`): each publishes how many connections of that
  listener's service it holds in a small shared file, one 8-byte slot each.
  When a connection waits, a worker that holds more than some sibling lets it
  go first for DEFER_SECONDS; if it is still waiting then (the sibling is busy,
  stuck or stopped), it takes it, and after SLOW_AFTER such times in a row it
  stops deferring for TRUST_SECONDS. So sessions spread evenly over the
  workers, and no connection waits for a worker that cannot run. Each worker
  takes ONE connection a turn (a non-blocking accept after the socket is
  readable; a sibling may win the race, then nothing is taken).
- It accepts by itself (an asyncio.Server look-alike: `sockets`, `close`,
  `wait_closed`), so the header is read from the socket before asyncio wraps
  it in a transport: reads ask for `ProxyHeaderParser.needed()` bytes at
  most, so no byte of the protocol behind the header is taken (a TLS
  ClientHello on the implicit-TLS ports stays in the socket for the
  handshake). Then the socket goes to `handoff(sock, client)`.
- A connection from a trusted source must send a valid header within
  PROXY_HEADER_SECONDS, else it is closed with one log line. A connection
  from anywhere else is handed on at once with its own address: a PROXY
  header from it is just bytes the protocol refuses (SMTP 500, IMAP BAD).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import mmap
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable

from .proxyproto import ProxyHeaderError, ProxyHeaderParser

log = logging.getLogger("postroom.proxy")

PROXY_HEADER_SECONDS = 5.0  # a balancer sends its header with the connection; a silent one is dropped
DEFER_SECONDS = 0.02  # a worker with more connections than a sibling lets a waiting one go to it first
SLOW_AFTER = 20  # connections in a row siblings left waiting (0.4 s of deferrals): busy or stuck, stop deferring
TRUST_SECONDS = 1.0  # ... for this long
ACCEPT_ERROR_PAUSE_SECONDS = 1.0  # out of file descriptors: wait before accepting again (as asyncio does)

Peer = tuple[str, int]
Handoff = Callable[[socket.socket, Peer], Awaitable[None]]


class Trusted:
    """The networks whose connections must start with a PROXY header."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)


async def read_header(sock: socket.socket, peer: Peer) -> Peer:
    """The client's address from the header (the peer's own for LOCAL / UNKNOWN); raises on a bad or no header."""
    loop = asyncio.get_running_loop()
    parser = ProxyHeaderParser()
    while parser.result is None:
        data = await loop.sock_recv(sock, parser.needed())
        if not data:
            raise ConnectionError("closed before the PROXY header ended")
        parser.feed(data)
    return parser.result.source or peer


class Turns:
    """A worker's view of its siblings' connection counts on one shared listener (see the notes)."""

    def __init__(self, path: str, slot: int, count: int, load: Callable[[], int]) -> None:
        self.slot, self.count, self.load = slot, count, load
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < 8 * count:
                os.ftruncate(fd, 8 * count)  # zeros: a sibling not yet started holds none
            self._map = mmap.mmap(fd, 8 * count)
        finally:
            os.close(fd)
        self._left_waiting = 0
        self._trust_until = 0.0

    def ahead(self, starting: int = 0) -> bool:
        """Publish this worker's count (with ``starting``: connections taken, not yet its service's); whether
        some sibling holds fewer (and has been taking its turns)."""
        mine = self.load() + starting
        struct.pack_into("<q", self._map, 8 * (self.slot - 1), mine)
        if time.monotonic() < self._trust_until:
            return False
        return any(struct.unpack_from("<q", self._map, 8 * i)[0] < mine for i in range(self.count)
                   if i != self.slot - 1)

    def deferred(self, taken_by_sibling: bool) -> None:
        """After a deferral: whether the sibling took the connection; too many left waiting stop the deferring."""
        self._left_waiting = 0 if taken_by_sibling else self._left_waiting + 1
        if self._left_waiting >= SLOW_AFTER:
            self._left_waiting = 0
            self._trust_until = time.monotonic() + TRUST_SECONDS

    def close(self) -> None:
        self._map.close()


async def _readable(sock: socket.socket) -> None:
    """Until `sock` has something to accept (without accepting it)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


class ProxyListener:
    """Accept on one socket; read the header of trusted peers; hand every connection on."""

    def __init__(self, name: str, sock: socket.socket, trusted: Trusted, handoff: Handoff,
                 turns: Turns | None = None) -> None:
        self.name = name
        self.sockets = [sock]
        self._trusted = trusted
        self._handoff = handoff
        self._turns = turns
        self._pending: set[asyncio.Task] = set()
        self._task = asyncio.create_task(self._accept(), name=f"proxy-accept {name}")

    @classmethod
    async def bind(cls, name: str, host: str, port: int, trusted: Trusted, handoff: Handoff, *,
                   backlog: int = 100, reuse_port: bool = False,
                   sock: socket.socket | None = None, turns: Turns | None = None) -> "ProxyListener":
        """``reuse_port``: SO_REUSEPORT, for worker processes sharing the port as asyncio's listeners do;
        ``sock``: a listening socket a supervisor already bound (mailserver.workers), shared with the
        siblings ``turns`` knows."""
        if sock is not None:
            sock.setblocking(False)
            return cls(name, sock, trusted, handoff, turns)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.create_server(addr, family=family, backlog=backlog, reuse_port=reuse_port)
        sock.setblocking(False)
        return cls(name, sock, trusted, handoff)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        lsock = self.sockets[0]
        while True:
            try:
                if self._turns is None:
                    sock, peer = await loop.sock_accept(lsock)
                else:
                    await _readable(lsock)
                    deferred = self._turns.ahead(len(self._pending))
                    if deferred:
                        await asyncio.sleep(DEFER_SECONDS)
                    try:
                        sock, peer = lsock.accept()
                    except BlockingIOError:  # a sibling took it
                        if deferred:
                            self._turns.deferred(taken_by_sibling=True)
                        continue
                    if deferred:
                        self._turns.deferred(taken_by_sibling=False)
            except (ConnectionAbortedError, InterruptedError):
                continue
            except OSError as exc:  # EMFILE and the like: the listener lives on
                log.warning("%s: accept failed (%s); pausing", self.name, exc)
                await asyncio.sleep(ACCEPT_ERROR_PAUSE_SECONDS)
                continue
            sock.setblocking(False)
            task = asyncio.create_task(self._start(sock, (str(peer[0]), int(peer[1]))))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            if self._turns is not None:
                await asyncio.sleep(0)  # one connection a turn: its count is published before the next

    async def _start(self, sock: socket.socket, peer: Peer) -> None:
        client = peer
        try:
            if peer[0] in self._trusted:
                async with asyncio.timeout(PROXY_HEADER_SECONDS):
                    client = await read_header(sock, peer)
            await self._handoff(sock, client)
        except (ProxyHeaderError, TimeoutError) as exc:
            why = "no PROXY header in time" if isinstance(exc, TimeoutError) else str(exc)
            log.warning("%s: dropped a connection from trusted balancer %s: %s", self.name, peer[0], why)
            sock.close()
        except (ConnectionError, OSError) as exc:
            log.info("%s: connection from %s ended at once: %s", self.name, client[0], exc)
            sock.close()
        except asyncio.CancelledError:
            sock.close()
            raise

    def close(self) -> None:
        """Stop accepting (connections already handed on go on)."""
        self._task.cancel()
        for task in list(self._pending):
            task.cancel()
        self.sockets[0].close()
        if self._turns is not None:
            self._turns.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._task, *self._pending, return_exceptions=True)
