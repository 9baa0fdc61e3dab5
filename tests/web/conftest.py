"""Fixtures: the whole server with the webmail, per test or per module, and HTTP clients for it."""

from __future__ import annotations

import pytest

from .harness import Browser, WebServer


@pytest.fixture
def web(tmp_path):
    srv = WebServer(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shared_web(tmp_path_factory):
    """One server for a module's cases that are refused and change nothing (issue 14 point 6): the cases
    check that, so a case that wrongly changed something fails instead of leaking into the next."""
    srv = WebServer(tmp_path_factory.mktemp("web")).start()
    yield srv
    srv.stop()


@pytest.fixture
def web_on_both(tmp_path, storage_url):
    """The whole server on SQLite and (marker pg) on a real PostgreSQL: a module whose routes write the
    directory or the queue overrides `web` with it to run every test on both back-ends."""
    srv = WebServer(tmp_path, storage_url=storage_url).start()
    yield srv
    srv.stop()


@pytest.fixture
async def client(web):
    b = Browser(web.url)
    yield b
    await b.close()
