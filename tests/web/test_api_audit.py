"""GET /api/v1/audit over real HTTP: role admin only, filters and paging (issue 13)."""

from __future__ import annotations

import aiohttp

from .queueing import token


async def _get(web, path: str, secret: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.get(web.url + path,
                                                   headers={"Authorization": f"Bearer {secret}"}) as r:
        return r.status, await r.json(content_type=None)


async def test_admins_page_through_the_audit_log_and_others_are_refused(web):
    async def entries() -> None:
        for i in range(5):
            await web.mb.directory.audit("alice@city.test", "test.step", f"t{i}")
    web.run(entries())
    admin = token(web, "alice@city.test", "admin")
    status, page = await _get(web, "/api/v1/audit?action=test.step&limit=3", admin)
    assert status == 200 and [i["target"] for i in page["items"]] == ["t4", "t3", "t2"]
    status, page2 = await _get(web, f"/api/v1/audit?action=test.step&limit=3&before={page['next_before']}", admin)
    assert [i["target"] for i in page2["items"]] == ["t1", "t0"] and page2["next_before"] is None
    status, page3 = await _get(web, "/api/v1/audit?text=T3", admin)  # a substring, any case, as the console's
    assert status == 200 and [i["target"] for i in page3["items"]] == ["t3"]
    status, _ = await _get(web, "/api/v1/audit?since=not-a-time", admin)
    assert status == 400
    user = token(web, "bob@city.test", "user")
    assert (await _get(web, "/api/v1/audit", user))[0] == 403
    assert (await _get(web, "/api/v1/audit", "bogus"))[0] == 401

    async def failed() -> list[dict]:
        await web.mb.directory.audit_buffer.flush()
        return await web.mb.directory.audit_entries(5, activity=True)
    got = web.run(failed())
    assert any(e["action"] == "login.failed" and e["target"] == "api" for e in got)
    views = [e for e in web.run(web.mb.directory.audit_entries(20)) if e["action"] == "audit.view"]
    assert len(views) == 3 and {e["actor"] for e in views} == {"alice@city.test"}  # each page read, not refusals
    assert '"text": "T3"' in views[0]["detail"] and '"via": "api"' in views[0]["detail"]
