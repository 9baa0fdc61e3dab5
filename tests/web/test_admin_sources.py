"""The console's workflow sources page over real HTTP: a token made there posts events, is shown once and is
revoked there; a webhook set there receives signed callbacks; role admin only, CSRF, audit without secrets."""

from __future__ import annotations

import html
import json
import re

import pytest

from mailboxes.events import Sources
from mailboxes.webhookendpoints import WebhookEndpoints
from tests.protocol.smtp.support import wait_for as async_wait_for
from tests.support.webhook_receiver import Receiver

from .harness import csrf_of
from .queueing import set_role
from .test_admin_holds import _audit  # entries whose action starts with a prefix (or one of a tuple)
from .test_events import delivered, event, post, source_token

SECRET = re.compile(r'<code id="src-secret">([^<]+)</code>')


@pytest.fixture
def web(web_on_both):
    return web_on_both  # every test on SQLite and on PostgreSQL


async def _admin(web, client) -> str:
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    r, page = await client.get("/admin/sources")
    assert r.status == 200
    return csrf_of(page)


def _token_id(page: str) -> int:
    m = re.search(r'<h2 id="src-secret-h">来源 oa 的令牌 #(\d+)</h2>', page)
    assert m, "no token number shown"
    return int(m.group(1))


def _secret(page: str) -> str:
    m = SECRET.search(page)
    assert m, "no secret shown"
    return html.unescape(m.group(1))


async def test_signed_out_visitors_go_to_the_sign_in_page(web, client):
    r, _ = await client.get("/admin/sources", allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "/login")


@pytest.mark.parametrize("role", ["user", "department_admin"])
async def test_users_and_department_admins_are_forbidden(web, client, role):
    source_token(web)
    set_role(web, "bob@city.test", role)
    await client.sign_in("bob@city.test")
    _, page = await client.get("/mail")
    csrf = csrf_of(page)
    r, body = await client.get("/admin/sources")
    assert r.status == 403 and "oa" not in body.split()
    for path, form in (("/admin/sources", {"name": "mine"}), ("/admin/sources/token", {"name": "oa"}),
                       ("/admin/sources/revoke", {"name": "oa", "confirm": "yes"}),
                       ("/admin/sources/revoke-token", {"name": "oa", "id": "1"}),
                       ("/admin/webhooks", {"source": "oa", "url": "http://127.0.0.1:9/x"}),
                       ("/admin/webhooks/remove", {"source": "oa"})):
        r, _ = await client.post(path, {"csrf": csrf, **form})
        assert r.status == 403, path
    sources = web.run(Sources(web.mb.router.central).list())
    assert [(s.name, s.revoked_at) for s in sources] == [("oa", None)]
    assert len(web.run(Sources(web.mb.router.central).tokens_of(sources[0].id))) == 1
    assert web.run(WebhookEndpoints(web.mb.router.central).list()) == []
    assert _audit(web, ("source.", "token.", "webhook.")) == []


async def test_a_token_made_in_the_console_is_shown_once_posts_events_and_is_revoked_there(web, client):
    csrf = await _admin(web, client)
    r, page = await client.post("/admin/sources", {"name": "oa"})
    assert r.status == 403  # no CSRF token: nothing made
    assert web.run(Sources(web.mb.router.central).list()) == []
    r, page = await client.post("/admin/sources", {"csrf": csrf, "name": "OA"})
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    assert "来源 oa 的令牌" in page and 'id="src-oa" class="active"' in page  # Chinese by default; names lowered
    first, first_id = _secret(page), _token_id(page)
    assert first.startswith("pr_")
    status, body, _ = await post(web, first, event(1))
    assert status == 202, body
    assert len(delivered(web, 1)) == 1
    r, page = await client.get("/admin/sources")
    assert first not in page and 'id="src-secret"' not in page  # shown once: never again
    assert "最近使用" in page  # its last use

    # Rotation: a second token; both work until the first is revoked there.
    r, page = await client.post("/admin/sources/token", {"csrf": csrf, "name": "oa"})
    second = _secret(page)
    assert second != first and (await post(web, second, event(2)))[0] == 202
    assert sorted(int(i) for i in re.findall(r'<li id="tok-(\d+)"', page)) == [first_id, _token_id(page)]
    r, page = await client.post("/admin/sources/revoke-token", {"csrf": csrf, "name": "oa", "id": str(first_id)})
    assert r.status == 200 and str(r.url).endswith(f"done=token_revoked&name=oa&id={first_id}")
    assert f'id="tok-{first_id}"' not in page and "另有 1 个已吊销的令牌" in page
    status, _, r = await post(web, first, event(3))
    assert (status, r.content_type) == (401, "application/problem+json")
    assert (await post(web, second, event(4)))[0] == 202
    r, _ = await client.post("/admin/sources/revoke-token", {"csrf": csrf, "name": "oa", "id": "999999"})
    assert r.status == 404

    # Revoking the source needs the confirmation; then every token is refused and none can be made.
    r, page = await client.post("/admin/sources/revoke", {"csrf": csrf, "name": "oa"})
    assert r.status == 400 and 'id="src-problem"' in page
    assert (await post(web, second, event(5)))[0] == 202
    r, page = await client.post("/admin/sources/revoke", {"csrf": csrf, "name": "oa", "confirm": "yes"})
    assert r.status == 200 and 'id="src-notice"' in page and 'id="src-oa" class="lifted"' in page
    assert (await post(web, second, event(6)))[0] == 401
    r, page = await client.post("/admin/sources/token", {"csrf": csrf, "name": "oa"})
    assert r.status == 409 and 'id="src-secret"' not in page
    assert (await post(web, second, event(7)))[0] == 401
    r, _ = await client.post("/admin/sources/revoke", {"csrf": csrf, "name": "nosuch", "confirm": "yes"})
    assert r.status == 404

    rows = _audit(web, ("source.", "token."))
    assert [(e["action"], e["target"], e["actor"]) for e in rows] == [
        ("source.add", "oa", "alice@city.test"), ("source.token", "oa", "alice@city.test"),
        ("token.revoke", str(first_id), "alice@city.test"), ("source.revoke", "oa", "alice@city.test")]
    assert all(json.loads(e["detail"])["via"] == "web" for e in rows)
    assert not any(s in e["detail"] for e in rows for s in (first, second))  # never a secret


async def test_bad_and_taken_names_are_refused_with_the_form_kept(web, client):
    csrf = await _admin(web, client)
    for bad in ("o a", "<b>x</b>", "x" * 65, "运维", ""):
        r, page = await client.post("/admin/sources", {"csrf": csrf, "name": bad})
        assert r.status == 400 and 'id="src-problem"' in page and 'id="src-secret"' not in page, bad
        assert "<b>x" not in page  # the name is escaped where it is shown again
    r, page = await client.post("/admin/sources", {"csrf": csrf, "name": "oa"})
    assert r.status == 200
    r, page = await client.post("/admin/sources", {"csrf": csrf, "name": "oa"})
    assert r.status == 409 and "已有名为 oa 的来源" in page and 'id="src-secret"' not in page
    assert [s.name for s in web.run(Sources(web.mb.router.central).list())] == ["oa"]


async def test_a_webhook_set_in_the_console_receives_signed_callbacks(web, client):
    secret = source_token(web)
    csrf = await _admin(web, client)
    receiver = await Receiver("whsec_unknown-until-the-page-shows-it").start()
    try:
        for bad in ("ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x", "http://oa.example/hook", "not a url"):
            r, page = await client.post("/admin/webhooks", {"csrf": csrf, "source": "oa", "url": bad})
            assert r.status == 400 and 'id="src-problem"' in page and 'id="src-secret"' not in page, bad
        assert web.run(WebhookEndpoints(web.mb.router.central).list()) == []
        r, page = await client.post("/admin/webhooks", {"csrf": csrf, "source": "oa", "url": receiver.url})
        assert r.status == 200 and "oa 的回调签名密钥" in page
        receiver.secret = _secret(page)
        assert receiver.secret.startswith("whsec_")
        assert (await post(web, secret, event(1)))[0] == 202
        await async_wait_for(lambda: receiver.acked, timeout=30, what="the delivered callback")
        assert receiver.requests[0].verified
        assert json.loads(receiver.requests[0].body)["type"] == "delivered"

        # A new URL keeps the secret (nothing shown); "new secret" shows a new one once.
        r, page = await client.post("/admin/webhooks", {"csrf": csrf, "source": "oa", "url": receiver.url + "&v=2"})
        assert r.status == 200 and str(r.url).endswith("done=webhook_set&name=oa") and 'id="src-secret"' not in page
        assert re.search(r'class="wh-counts">待发 \d+ · 已送达 1 · 已放弃 0<', page)
        r, page = await client.post("/admin/webhooks", {"csrf": csrf, "source": "oa", "url": receiver.url,
                                                        "new_secret": "yes"})
        rotated = _secret(page)
        assert rotated != receiver.secret
        r, page = await client.post("/admin/webhooks/remove", {"csrf": csrf, "source": "oa"})
        assert r.status == 200 and 'id="wh-oa"' not in page and 'id="wh-none"' in page
        r, _ = await client.post("/admin/webhooks/remove", {"csrf": csrf, "source": "oa"})
        assert r.status == 404
    finally:
        await receiver.stop()
    rows = _audit(web, ("webhook.",))
    assert [(e["action"], json.loads(e["detail"]).get("secret")) for e in rows] == [
        ("webhook.set", "new"), ("webhook.set", "kept"), ("webhook.set", "new"), ("webhook.remove", None)]
    assert not any(s in e["detail"] for e in rows for s in (receiver.secret, rotated))


async def test_the_page_speaks_english_and_lists_webhooks_of_other_systems(web, client):
    source_token(web)
    web.run(WebhookEndpoints(web.mb.router.central).set("registry", "http://127.0.0.1:9/docs"))
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    r, page = await client.get("/admin/sources", headers={"Accept-Language": "en"})
    assert r.status == 200 and "Workflow sources" in page and "Sources and their tokens" in page
    assert 'id="wh-registry"' in page and "not a workflow source" in page
    assert "never used" in page
    r, page = await client.get("/admin/sources?done=revoked&name=%3Cscript%3E")
    assert 'id="src-notice"' not in page and "<script>" not in page  # a notice only a redirect of ours gives
