"""A webhook receiver on 127.0.0.1 for tests: verifies signatures with the Standard Webhooks reference library.

It can refuse the first N callbacks (503), hang (until released; a request whose sender
hung up meanwhile is not acknowledged), or redirect; it counts what
it acknowledged per delivery id. `verify_window=True` checks the timestamp against real time
too (the library's 5-minute window); tests that move the sender's clock compare the signature only.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes
    verified: bool


class Receiver:
    def __init__(self, secret: str, *, verify_window: bool = False) -> None:
        self.secret = secret
        self.verify_window = verify_window
        self.fail_first = 0  # answer 503 to this many callbacks first
        self.status = 204  # the answer after that
        self.hang = False  # wait for `release` before answering
        self.release = asyncio.Event()
        self.requests: list[Seen] = []
        self.acked: Counter[str] = Counter()
        self.arrived = asyncio.Event()  # set at every request
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=receiver-side-token"

    def verified(self, headers: dict[str, str], body: bytes) -> bool:
        wh = Webhook(self.secret)
        try:
            if self.verify_window:
                wh.verify(body, headers)
                return True
            stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=timezone.utc)
            want = wh.sign(headers["webhook-id"], stamp, body.decode("utf-8"))
            return want in headers["webhook-signature"].split(" ")
        except (WebhookVerificationError, KeyError, ValueError):
            return False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        ok = self.verified(headers, body)
        self.requests.append(Seen(headers, body, ok))
        self.arrived.set()
        if self.hang:
            await self.release.wait()
            transport = request.transport
            if transport is None or transport.is_closing():
                return web.Response(status=503)  # the sender is gone (timed out, killed): nothing acknowledged
        if not ok:
            return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503, reason="Busy Now")
        if self.status == 307:
            raise web.HTTPTemporaryRedirect("http://127.0.0.1:9/elsewhere")
        if 200 <= self.status <= 299:
            self.acked[headers["webhook-id"]] += 1
        return web.Response(status=self.status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
