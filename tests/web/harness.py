"""The whole server (delivery, SMTP, IMAP, webmail) on loopback ephemeral ports, and a small HTTP client for the webmail."""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from mailserver.config import Config
from tests.protocol.imap.harness import PASSWORD, ImapServer

__all__ = ["PASSWORD", "WebServer", "Browser", "csrf_of"]

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(page: str) -> str:
    m = _CSRF.search(page)
    assert m, "no CSRF field on the page"
    return m.group(1)


@contextlib.contextmanager
def counted_reads(store) -> Iterator[list[tuple[str, int]]]:  # noqa: ANN001 - a mailboxes Store
    """Within the block, every read of a stored message: ("whole", 0) or ("range", its length)."""
    read: list[tuple[str, int]] = []
    whole, ranged = store.raw, store.raw_range

    async def whole_spy(*args):  # noqa: ANN002, ANN202
        read.append(("whole", 0))
        return await whole(*args)

    async def ranged_spy(partition, blob_id, start, end):  # noqa: ANN001, ANN202
        read.append(("range", end - start))
        return await ranged(partition, blob_id, start, end)
    store.raw, store.raw_range = whole_spy, ranged_spy
    try:
        yield read
    finally:
        del store.raw, store.raw_range


class WebServer(ImapServer):
    """ImapServer(whole_server=True) with the webmail listening on `http` (and `https` when asked)."""

    def __init__(self, tmp: Path, *, https: bool = False, limits: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(tmp, whole_server=True, limits=limits, **kw)
        values = {section: dict(keys) for section, keys in self.config.values.items()}
        values["listen"]["http"] = "127.0.0.1:0"
        if https:
            values["listen"]["https"] = "127.0.0.1:0"
        self.config = Config(self.config.path, values)

    async def _start(self) -> None:
        await super()._start()
        from webmail.service import WebmailService

        self.web = next(s for s in self.services if isinstance(s, WebmailService))

    @property
    def url(self) -> str:
        host, port = self.web.addresses["http"]
        return f"http://{host}:{port}"

    @property
    def https_url(self) -> str:
        host, port = self.web.addresses["https"]
        return f"https://{host}:{port}"

    @property
    def smtp_port(self) -> int:
        return self.smtp.addresses["smtp"][1]


class Browser:
    """An aiohttp client with its own cookie jar: one browser, talking real HTTP to the server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             connector=aiohttp.TCPConnector(ssl=_no_verify()))

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **kw: Any) -> tuple[aiohttp.ClientResponse, str]:
        async with self.session.get(self.base + path, **kw) as r:
            return r, await r.text(errors="replace")

    async def download(self, path: str, **kw: Any) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.session.get(self.base + path, **kw) as r:
            return r, await r.read()

    async def post(self, path: str, data: dict, **kw: Any) -> tuple[aiohttp.ClientResponse, str]:
        async with self.session.post(self.base + path, data=data, **kw) as r:
            return r, await r.text(errors="replace")

    async def sign_in(self, address: str = "alice@city.test", password: str = PASSWORD
                      ) -> tuple[aiohttp.ClientResponse, str]:
        _, page = await self.get("/login")
        return await self.post("/login", {"csrf": csrf_of(page), "address": address, "password": password})


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
    return ctx
