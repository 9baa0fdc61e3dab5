"""New mail without reloading: a server-sent event stream (HTML Living Standard §9.2) fed by the store's change bus.

Implementation notes
- One stream listens on every folder of the signed-in account (the bus is keyed by folder);
  it sends only "something changed in folder X", and the page fetches what it shows again.
- Bounded: at most MAX_STREAMS_PER_ACCOUNT streams per account per node, events that come
  in a burst are sent as one, a comment every HEARTBEAT_SECONDS keeps proxies from closing
  the stream, and a stream ends after STREAM_SECONDS: EventSource reconnects by itself, and
  the new request checks the session again (a signed-out session gets no new stream).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from aiohttp import web

from ..context import WEBMAIL
from ..sessions import require_account

MAX_STREAMS_PER_ACCOUNT = 10
HEARTBEAT_SECONDS = 25.0
STREAM_SECONDS = 600.0
RETRY_MS = 3000  # how soon EventSource reconnects (the `retry` field)

STREAMS = web.AppKey("live_streams", Counter)  # open streams per account id
TASKS = web.AppKey("live_tasks", set)  # the handlers' tasks, ended at shutdown


async def end_streams(app: web.Application) -> None:
    """on_shutdown: end the open streams, so that stopping does not wait for them."""
    for task in list(app[TASKS]):
        task.cancel()


async def events(request: web.Request) -> web.StreamResponse:
    account = require_account(request)
    wm = request.app[WEBMAIL]
    streams = request.app[STREAMS]
    if streams[account.id] >= MAX_STREAMS_PER_ACCOUNT:
        raise web.HTTPTooManyRequests(text="too many open event streams")
    if wm.bus is None:
        raise web.HTTPNotFound()
    folders = await wm.mailboxes.store.folders(account)
    names = {f.ref: f.name for f in folders}
    queue: asyncio.Queue = asyncio.Queue()
    listeners = [wm.bus.listen(f.ref) for f in folders]
    pumps = [asyncio.create_task(_pump(lst, queue)) for lst in listeners]
    streams[account.id] += 1
    me = asyncio.current_task()
    request.app[TASKS].add(me)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        loop = asyncio.get_running_loop()
        end = loop.time() + STREAM_SECONDS
        while (left := end - loop.time()) > 0:
            try:
                async with asyncio.timeout(min(HEARTBEAT_SECONDS, left)):
                    ev = await queue.get()
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            changed = {names.get(ev.folder, "")}
            while not queue.empty():  # a burst is one message to the page
                changed.add(names.get(queue.get_nowait().folder, ""))
            for name in sorted(n for n in changed if n):
                await response.write(f"event: changed\ndata: {json.dumps({'folder': name})}\n\n".encode())
    except ConnectionResetError:
        pass
    finally:
        request.app[TASKS].discard(me)
        for task in pumps:
            task.cancel()
        for lst in listeners:
            lst.close()
        streams[account.id] -= 1
        if streams[account.id] <= 0:
            del streams[account.id]
    return response


async def _pump(listener, queue: asyncio.Queue) -> None:
    while True:
        ev = await listener.get()
        if queue.qsize() < 100:  # beyond that the page refetches anyway
            queue.put_nowait(ev)
