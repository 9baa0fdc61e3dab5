"""The organisation address book over real HTTP: the page (tree, paging, search, groups) and the completion JSON."""

from __future__ import annotations

import html

from mailboxes.addressbook import MAX_RESULTS
from webmail.views.addressbook import COMPLETE_PEOPLE

from .harness import Browser


async def org(web) -> None:
    """Departments 市税务局 > 办公室, colleagues with Chinese names (one disabled) and a group who may post to."""
    async def go():
        d = web.mb.directory
        await d.add_department("bureau", "市税务局", kind="bureau")
        await d.add_department("office", "办公室", parent="bureau")
        await web.add_account("wangfang", display_name="王芳", department="office")
        await web.add_account("wangwei", display_name="王伟", department="office")
        await web.add_account("gone", display_name="王离职", department="office")
        await d.set_enabled("gone@city.test", False)
        await d.add_group("office-all@city.test", "办公室全体", post_policy="posters", department="office")
        await d.set_group_members("office-all@city.test", add=["wangfang@city.test", "gone@city.test"])
        await d.set_group_members("office-all@city.test", add=["wangwei@city.test"], posters=True)
    await web.loop_run(go())


async def test_completion_finds_people_by_chinese_name_and_groups_hides_disabled(web, client):
    await org(web)
    await client.sign_in()
    async with client.session.get(client.base + "/addressbook/complete", params={"q": "王"}) as r:
        assert r.status == 200 and r.content_type == "application/json"
        found = await r.json()
    assert {(x["address"], x["name"], x["department"], x["kind"]) for x in found} == {
        ("wangfang@city.test", "王芳", "办公室", "person"), ("wangwei@city.test", "王伟", "办公室", "person")}
    async with client.session.get(client.base + "/addressbook/complete", params={"q": "办公室"}) as r:
        assert [(x["address"], x["kind"]) for x in await r.json()] == [("office-all@city.test", "group")]
    async with client.session.get(client.base + "/addressbook/complete", params={"q": "wangf"}) as r:
        assert [x["address"] for x in await r.json()] == ["wangfang@city.test"]
    async with client.session.get(client.base + "/addressbook/complete", params={"q": "离职"}) as r:
        assert await r.json() == []
    async with client.session.get(client.base + "/addressbook/complete", params={"q": "%" * 2000}) as r:
        assert r.status == 200 and await r.json() == []


async def test_completion_and_search_are_bounded(web, client):
    async def many():
        for i in range(MAX_RESULTS + 3):
            await web.mb.directory.add_account(f"z{i:03}@city.test", password=None, display_name=f"张{i:03}")
    await web.loop_run(many())
    await client.sign_in()
    async with client.session.get(client.base + "/addressbook/complete", params={"q": "张"}) as r:
        assert len(await r.json()) == COMPLETE_PEOPLE
    r, page = await client.get("/addressbook", params={"q": "张"})
    assert r.status == 200 and page.count('<tr data-address="z') == MAX_RESULTS


async def test_page_shows_tree_department_people_with_paging_and_groups_with_posters(web, client):
    await org(web)
    async def more():
        await web.mb.directory.add_department("big", "大部门", parent="bureau")
        for i in range(MAX_RESULTS + 2):
            await web.mb.directory.add_account(f"b{i:03}@city.test", password=None, display_name=f"李{i:03}",
                                               department="big")
    await web.loop_run(more())
    await client.sign_in()
    r, page = await client.get("/addressbook")
    assert r.status == 200
    assert page.index("市税务局") < page.index('class="depth-1"><a href="/addressbook?dept=office"')
    assert 'for="ab-q"' in page and 'id="ab-q"' in page  # labelled search box
    group = page[page.index('data-group="office-all@city.test"'):]
    group = html.unescape(group[:group.index("</details>")])
    assert "只有指定的人可以发信" in group  # the posting rule, in Chinese by default
    assert "wangwei@city.test" in group.split("可发信的人")[1].split("成员")[0]
    assert "wangfang@city.test" in group and "gone@city.test" not in group  # disabled member hidden

    r, page = await client.get("/addressbook", params={"dept": "office"})
    assert 'data-address="wangfang@city.test"' in page and 'data-address="wangwei@city.test"' in page
    assert "gone@city.test" not in page
    r, page = await client.get("/addressbook", params={"dept": "big"})
    assert page.count('<tr data-address="b') == MAX_RESULTS and 'id="ab-next"' in page and 'id="ab-prev"' not in page
    r, page = await client.get("/addressbook", params={"dept": "big", "offset": str(MAX_RESULTS)})
    assert page.count('<tr data-address="b') == 2 and 'id="ab-next"' not in page and 'id="ab-prev"' in page
    r, page = await client.get("/addressbook", params={"dept": "big", "offset": "x" * 50})
    assert r.status == 200 and page.count('<tr data-address="b') == MAX_RESULTS

    client.session.cookie_jar.update_cookies({"postroom-lang": "en"})
    r, page = await client.get("/addressbook", params={"q": "王"})
    assert "Organisation address book" in page and "Only the listed posters may post" in page
    assert 'data-address="wangfang@city.test"' in page and "gone@city.test" not in page


async def test_signed_out_is_refused(web):
    await org(web)
    b = Browser(web.url)
    try:
        async with b.session.get(b.base + "/addressbook/complete", params={"q": "王"},
                                 allow_redirects=False) as r:
            assert r.status == 401 and "wangfang" not in await r.text()
        async with b.session.get(b.base + "/addressbook", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
    finally:
        await b.close()


async def test_compose_to_field_offers_completion(web, client):
    await client.sign_in()
    r, page = await client.get("/compose")
    assert 'data-complete="addresses"' in page and "complete.js" in page
    r, script = await client.get("/static/complete.js")
    assert r.status == 200 and 'role", "listbox"' in script


async def test_compose_with_the_file_input_left_empty_sends(web, client):
    """A browser sends an unused file input as an empty part with filename="" (HTML §4.10.21.8): not an upload."""
    import aiohttp

    from .harness import csrf_of
    from .test_compose import _mails

    await client.sign_in()
    _, page = await client.get("/compose")
    form = aiohttp.FormData()
    for k, v in {"csrf": csrf_of(page), "mode": "new", "to": "bob@city.test", "cc": "", "subject": "无附件",
                 "body": "你好"}.items():
        form.add_field(k, v)
    form.add_field("attachments", b"", filename="", content_type="application/octet-stream")
    r, _ = await client.post("/compose", form)
    assert r.status == 200 and "folder=Sent" in str(r.url)
    [(_, raw)] = _mails(web, "bob")
    assert b"multipart" not in raw.split(b"\r\n\r\n", 1)[0].lower()
