"""The operations API over real HTTP: queue list/get/retry/hold/release/delete, DKIM, stats; role admin only; problem details."""

from __future__ import annotations

from datetime import datetime, timezone

import aiohttp
import pytest

from delivery.links import Links

from .queueing import deferred_message, token

PROBLEM = "application/problem+json"


@pytest.fixture
def web(web_on_both):
    return web_on_both  # every test on SQLite and on PostgreSQL


async def _call(web, method: str, path: str, secret: str, **kw) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as s, s.request(method, web.url + path,
                                                         headers={"Authorization": f"Bearer {secret}"}, **kw) as r:
        return r.status, r.content_type, await r.json(content_type=None)


def _audit(web, n: int) -> list[tuple[str, str, str]]:
    rows = web.run(web.mb.directory.audit_entries(n))
    return [(r["actor"], r["action"], r["target"]) for r in reversed(rows)]


async def test_an_admin_lists_filters_and_acts_on_a_deferred_message(web):
    qid = deferred_message(web)
    admin = token(web, "alice@city.test", "admin")
    status, _, page = await _call(web, "GET", "/api/v1/queue?state=deferred", admin)
    assert status == 200 and page["total"] == 1 and [i["id"] for i in page["items"]] == [qid]
    item = page["items"][0]
    assert item["deferred"] and item["attempts"] == 1 and item["last_error"]
    status, _, page = await _call(web, "GET", "/api/v1/queue?route=far.test", admin)
    assert [i["id"] for i in page["items"]] == [qid]
    status, _, page = await _call(web, "GET", "/api/v1/queue?route=elsewhere.test", admin)
    assert (status, page["total"], page["items"]) == (200, 0, [])
    status, _, routes = await _call(web, "GET", "/api/v1/queue/routes", admin)
    [far] = [r for r in routes["items"] if r["route"] == "far.test"]
    assert far["messages"] == 1 and far["via"].startswith("127.0.0.1:") and far["oldest_age_seconds"] >= 0
    # The attempt was refused: the route's link is down (delivery.links), with the next probe and why.
    assert (far["state"], far["urgent"]) == ("down", 0) and far["last_error"].startswith("cannot connect to")
    assert far["next_probe_at"] > far["down_since"]
    web.run(Links(web.mb.router.central, node="t", clock=lambda: datetime.now(timezone.utc)).mark_up(far["via"]))
    status, _, routes = await _call(web, "GET", "/api/v1/queue/routes", admin)
    [far] = [r for r in routes["items"] if r["route"] == "far.test"]
    assert (far["state"], far["next_probe_at"]) == ("up", None)
    status, _, one = await _call(web, "GET", f"/api/v1/queue/{qid}", admin)
    assert status == 200 and [r["address"] for r in one["recipient_list"]] == ["someone@far.test"]

    assert (await _call(web, "POST", f"/api/v1/queue/{qid}/hold", admin))[2]["recipients"] == 1
    status, _, page = await _call(web, "GET", "/api/v1/queue?state=held", admin)
    assert [i["id"] for i in page["items"]] == [qid]
    assert (await _call(web, "POST", f"/api/v1/queue/{qid}/release", admin))[2]["recipients"] == 1
    assert (await _call(web, "POST", f"/api/v1/queue/{qid}/retry", admin))[2]["recipients"] == 1
    status, _, body = await _call(web, "DELETE", f"/api/v1/queue/{qid}", admin)
    assert (status, body["action"], body["recipients"]) == (200, "delete", 1)
    status, ctype, body = await _call(web, "GET", f"/api/v1/queue/{qid}", admin)
    assert (status, ctype, body["status"]) == (404, PROBLEM, 404)
    assert _audit(web, 4) == [("alice@city.test", f"queue.{a}", qid) for a in ("hold", "release", "retry", "delete")]


@pytest.mark.parametrize("method,path", [("GET", "/api/v1/queue/NOSUCHID"), ("POST", "/api/v1/queue/NOSUCHID/retry"),
                                         ("POST", "/api/v1/queue/NOSUCHID/hold"),
                                         ("POST", "/api/v1/queue/NOSUCHID/release"),
                                         ("DELETE", "/api/v1/queue/NOSUCHID"), ("GET", "/api/v1/queue/bad%20id"),
                                         ("POST", "/api/v1/dkim/elsewhere.test/generate")])
async def test_unknown_ids_are_404_problems(shared_web, shared_admin, method, path):
    before = shared_web.run(shared_web.mb.directory.audit_entries(50))
    status, ctype, body = await _call(shared_web, method, path, shared_admin)
    assert (status, ctype, body["status"], body["title"]) == (404, PROBLEM, 404, "Not Found")
    assert shared_web.run(shared_web.mb.directory.audit_entries(50)) == before  # no action was taken


@pytest.fixture(scope="module")
def shared_admin(shared_web) -> str:
    return token(shared_web, "alice@city.test", "admin")


async def test_bad_paging_and_filters_are_400_problems(web):
    admin = token(web, "alice@city.test", "admin")
    for query, field in (("limit=0", "limit"), ("limit=201", "limit"), ("after=-1", "limit"), ("after=x", "limit"),
                         ("state=lost", "state")):
        status, ctype, body = await _call(web, "GET", f"/api/v1/queue?{query}", admin)
        assert (status, ctype, body["field"]) == (400, PROBLEM, field), query


@pytest.mark.parametrize("role", ["department_admin", "user"])
async def test_department_admins_and_users_are_forbidden_everywhere(web, role):
    qid = deferred_message(web)
    secret = token(web, "bob@city.test", role)
    for method, path in (("GET", "/api/v1/queue"), ("GET", "/api/v1/queue/routes"), ("GET", f"/api/v1/queue/{qid}"),
                         ("POST", f"/api/v1/queue/{qid}/retry"), ("POST", f"/api/v1/queue/{qid}/hold"),
                         ("POST", f"/api/v1/queue/{qid}/release"), ("DELETE", f"/api/v1/queue/{qid}"),
                         ("GET", "/api/v1/dkim"), ("POST", "/api/v1/dkim/city.test/generate"),
                         ("GET", "/api/v1/stats")):
        status, ctype, body = await _call(web, method, path, secret)
        assert (status, ctype, body["status"]) == (403, PROBLEM, 403), path
    admin = token(web, "alice@city.test", "admin")
    status, _, one = await _call(web, "GET", f"/api/v1/queue/{qid}", admin)
    assert status == 200 and one["id"] == qid  # nothing was changed
    assert [r["action"] for r in web.run(web.mb.directory.audit_entries(5))] == []


async def test_dkim_keys_and_their_dns_records(web):
    admin = token(web, "alice@city.test", "admin")
    status, _, body = await _call(web, "GET", "/api/v1/dkim", admin)
    assert status == 200 and body["items"] == [{"domain": "city.test", "selector": None, "has_key": False,
                                                "created_at": None, "record_name": None, "txt": None,
                                                "zone_line": None}]
    status, _, made = await _call(web, "POST", "/api/v1/dkim/city.test/generate", admin, json={"selector": "s1"})
    assert status == 201 and made["selector"] == "s1" and made["record_name"] == "s1._domainkey.city.test"
    assert made["txt"].startswith("v=DKIM1; k=rsa; p=") and made["zone_line"].startswith("s1._domainkey.city.test. IN TXT (")
    status, _, body = await _call(web, "GET", "/api/v1/dkim", admin)
    assert body["items"] == [made]
    status, ctype, body = await _call(web, "POST", "/api/v1/dkim/city.test/generate", admin, json={"selector": "a b"})
    assert (status, ctype, body["field"]) == (400, PROBLEM, "selector")
    status, _, made = await _call(web, "POST", "/api/v1/dkim/city.test/generate", admin)  # the configured selector
    assert status == 201 and made["selector"] == "postroom"
    assert [a for _, a, _ in _audit(web, 2)] == ["dkim.generate", "dkim.generate"]


async def test_stats_volume_queue_health_and_storage(web):
    qid = deferred_message(web)
    admin = token(web, "alice@city.test", "admin")
    status, _, body = await _call(web, "GET", "/api/v1/stats", admin)
    assert status == 200 and len(body["volume"]) == 14
    assert body["queue"]["deferred"] == 1 and body["queue"]["messages"] == 1
    assert [m["id"] for m in body["queue"]["deferred_messages"]] == [qid]
    assert body["queue"]["oldest_age_seconds"] >= 0
    [none] = body["storage"]
    assert none["department"] is None and none["accounts"] == 2


async def test_an_api_post_needs_no_csrf_token_but_a_console_post_does(web, client):
    admin = token(web, "alice@city.test", "admin")
    status, _, _ = await _call(web, "POST", "/api/v1/queue/NOSUCHID/retry", admin)
    assert status == 404  # reached the handler: bearer-only routes are not behind the cookie CSRF check
    await client.sign_in()
    r, _ = await client.post("/admin/queue/action", {"id": "X", "action": "retry"})
    assert r.status == 403
