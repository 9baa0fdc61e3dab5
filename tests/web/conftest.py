"""Fixtures: the whole server with the webmail, per test or per module, and HTTP clients for it."""

from __future__ import annotations

import pytest

from .harness import Browser, WebServer


@pytest.fixture
def web(tmp_path):
    srv = WebServer(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture
async def client(web):
    b = Browser(web.url)
    yield b
    await b.close()
