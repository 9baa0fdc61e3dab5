"""The operations pages of the admin console over real HTTP: role admin only, CSRF on every action, audit, 404 for unknown ids."""

from __future__ import annotations

import re

import pytest

from .harness import Browser, csrf_of
from .queueing import deferred_message, set_role

PAGES = ("/admin/queue", "/admin/dkim", "/admin/dashboard")


@pytest.fixture
def web(web_on_both):
    return web_on_both  # every test on SQLite and on PostgreSQL


async def test_signed_out_visitors_go_to_the_sign_in_page(web, client):
    for path in PAGES:
        r, _ = await client.get(path, allow_redirects=False)
        assert (r.status, r.headers["Location"]) == (303, "/login"), path


@pytest.mark.parametrize("role", ["user", "department_admin"])
async def test_users_and_department_admins_are_forbidden(web, client, role):
    qid = deferred_message(web)
    set_role(web, "bob@city.test", role)
    await client.sign_in("bob@city.test")
    _, page = await client.get("/mail")
    csrf = csrf_of(page)
    for path in PAGES:
        r, _ = await client.get(path)
        assert r.status == 403, path
    r, _ = await client.post("/admin/queue/action", {"csrf": csrf, "id": qid, "action": "delete"})
    assert r.status == 403
    r, _ = await client.post("/admin/dkim/generate", {"csrf": csrf, "domain": "city.test", "selector": "x"})
    assert r.status == 403
    assert web.run(web.mb.directory.audit_entries(5)) == []


async def test_an_admin_holds_releases_retries_and_deletes_from_the_queue_page(web, client):
    qid = deferred_message(web)
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    r, page = await client.get("/admin/queue?state=deferred")
    assert r.status == 200 and f'id="q-{qid}"' in page and "延迟重试" in page  # Chinese by default
    assert re.search(r"far\.test</a></td>\s*<td[^>]*>127\.0\.0\.1:\d+</td>", page)  # the per-route figures
    csrf = csrf_of(page)
    r, _ = await client.post("/admin/queue/action", {"id": qid, "action": "hold"})
    assert r.status == 403  # no CSRF token
    for action in ("hold", "release", "retry", "delete"):
        r, page = await client.post("/admin/queue/action", {"csrf": csrf, "id": qid, "action": action,
                                                            "state": "deferred"})
        assert r.status == 200 and 'id="aq-notice"' in page, action
        assert str(r.url).endswith(f"state=deferred&done={action}&n=1")
    assert f'id="q-{qid}"' not in page
    rows = web.run(web.mb.directory.audit_entries(4))
    assert [(x["action"], x["target"]) for x in reversed(rows)] == [
        (f"queue.{a}", qid) for a in ("hold", "release", "retry", "delete")]
    assert all('"via": "web"' in x["detail"] for x in rows)
    r, _ = await client.post("/admin/queue/action", {"csrf": csrf, "id": qid, "action": "retry"})
    assert r.status == 404  # gone
    r, _ = await client.post("/admin/queue/action", {"csrf": csrf, "id": "../x", "action": "retry"})
    assert r.status == 404


async def test_an_admin_makes_a_dkim_key_and_sees_its_record(web, client):
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    r, page = await client.get("/admin/dkim")
    assert r.status == 200 and 'class="dkim-missing"' in page
    r, page = await client.post("/admin/dkim/generate", {"csrf": csrf_of(page), "domain": "city.test",
                                                         "selector": "s2026"})
    assert r.status == 200 and "s2026._domainkey.city.test. IN TXT (" in page and "v=DKIM1; k=rsa; p=" in page
    r, page = await client.post("/admin/dkim/generate", {"csrf": csrf_of(page), "domain": "city.test",
                                                         "selector": "bad selector"})
    assert 'id="dkim-error"' in page
    r, _ = await client.post("/admin/dkim/generate", {"csrf": csrf_of(page), "domain": "other.test", "selector": "s"})
    assert r.status == 404


async def test_the_dashboard_draws_its_charts_with_text_alternatives_in_english_too(web, client):
    deferred_message(web)
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    r, page = await client.get("/admin/dashboard")
    assert r.status == 200 and r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    for chart in ("chart-volume", "chart-queue", "chart-storage"):
        assert re.search(rf'<svg class="chart" id="{chart}"[^>]*role="img" aria-labelledby="{chart}-t {chart}-d"', page)
        assert f'<desc id="{chart}-d">' in page
    assert "<script" not in page.split("</head>", 1)[1] and " style=" not in page
    assert 'id="volume-table"' in page and 'id="dash-deferred"' in page
    english = Browser(web.url)
    try:
        await english.sign_in()
        _, page = await english.get("/admin/dashboard", headers={"Accept-Language": "en"})
        assert "Messages per day, last 14 days" in page and "Storage per department" in page
    finally:
        await english.close()
