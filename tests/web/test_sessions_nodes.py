"""Sessions live in the database, so several nodes share them (issue 10 point 1): a second node's webmail on the same store honours a session made on the first, and signing out on one ends it on both."""

from __future__ import annotations

from aiohttp import web as aioweb
from yarl import URL

from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER
from webmail.app import make_app

from .harness import Browser, WebServer, csrf_of


async def _refuse_sign_in(address: str, password: str, ip: str | None):
    raise AssertionError("node B is only reached with node A's session")


async def test_a_session_made_on_one_node_works_on_another_and_sign_out_reaches_both(tmp_path, storage_url):
    node_a = WebServer(tmp_path, storage_url=storage_url).start()
    mb_b = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)  # node B: its own engine
    runner = aioweb.AppRunner(make_app(mb_b, login=_refuse_sign_in), access_log=None)
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    a, b = Browser(node_a.url), Browser(f"http://{host}:{port}")
    try:
        await a.sign_in()
        b.session.cookie_jar.update_cookies(a.session.cookie_jar.filter_cookies(URL(node_a.url)))  # the same browser
        r, page = await b.get("/mail", allow_redirects=False)
        assert r.status == 200 and "alice@city.test" in page  # node B knows the session
        r, _ = await b.post("/logout", {"csrf": csrf_of(page)}, allow_redirects=False)  # the token is the session's
        assert r.status == 303
        for node in (a, b):
            r, _ = await node.get("/mail", allow_redirects=False)
            assert (r.status, r.headers["Location"]) == (303, "/login")  # ended in the database: on both
    finally:
        await a.close()
        await b.close()
        await runner.cleanup()
        await mb_b.close()
        node_a.stop()
