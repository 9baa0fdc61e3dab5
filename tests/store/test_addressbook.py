"""The organisation address book on SQLite and PostgreSQL: search, departments, groups, limits, disabled hidden."""

from __future__ import annotations

from mailboxes import addressbook


async def _org(mb):
    d = mb.directory
    await d.add_department("bureau", "市税务局", kind="bureau")
    await d.add_department("office", "办公室", parent="bureau")
    await mb.add_account("wangfang@city.test", password=None, display_name="王芳", department="office")
    await mb.add_account("wangwei@city.test", password=None, display_name="王伟", department="office")
    await mb.add_account("li@city.test", password=None, display_name="Li Na", department="bureau")
    await mb.add_account("gone@city.test", password=None, display_name="王离职", department="office")
    await d.set_enabled("gone@city.test", False)


async def test_people_by_chinese_name_substring_or_address_prefix_without_disabled(mb):
    await _org(mb)
    book = mb.addressbook
    found = await book.search_people("王")
    assert sorted(p.address for p in found) == ["wangfang@city.test", "wangwei@city.test"]
    [fang] = await book.search_people("芳")
    assert (fang.name, fang.department_code, fang.department_name) == ("王芳", "office", "办公室")
    assert [p.address for p in await book.search_people("LI@")] == ["li@city.test"]
    assert [p.address for p in await book.search_people("na")] == ["li@city.test"]  # name, any case
    assert await book.search_people("city.test") == []  # address: a prefix, not a substring
    assert await book.search_people("离职") == []  # disabled
    assert await book.search_people("   ") == []
    assert await book.search_people("%") == [] and await book.search_people("_") == []  # wildcards escaped


async def test_every_search_and_page_is_bounded(mb):
    await mb.directory.add_department("big", "大部门")
    for i in range(addressbook.MAX_RESULTS + 5):
        await mb.directory.add_account(f"p{i:03}@city.test", password=None, display_name=f"张{i:03}",
                                       department="big")
    assert len(await mb.addressbook.search_people("张", limit=10_000)) == addressbook.MAX_RESULTS
    assert len(await mb.addressbook.search_people("张", limit=3)) == 3
    page, more = await mb.addressbook.department_people("big")
    assert len(page) == addressbook.MAX_RESULTS and more
    rest, more = await mb.addressbook.department_people("big", offset=addressbook.MAX_RESULTS)
    assert len(rest) == 5 and not more
    assert {p.address for p in page}.isdisjoint(p.address for p in rest)
    long = "张" * 10_000
    assert await mb.addressbook.search_people(long) == []


async def test_departments_tree_and_department_people(mb):
    await _org(mb)
    deps = {x.code: x for x in await mb.addressbook.departments()}
    assert deps["office"].parent_id == deps["bureau"].id and deps["bureau"].parent_id is None
    people, more = await mb.addressbook.department_people("OFFICE")
    assert sorted(p.address for p in people) == ["wangfang@city.test", "wangwei@city.test"] and not more


async def test_groups_show_members_and_who_may_post_without_disabled(mb):
    await _org(mb)
    d = mb.directory
    await d.add_group("office-all@city.test", "办公室全体", post_policy="posters", department="office")
    await d.set_group_members("office-all@city.test",
                              add=["wangfang@city.test", "wangwei@city.test", "gone@city.test"])
    await d.set_group_members("office-all@city.test", add=["li@city.test", "gone@city.test"], posters=True)
    await d.add_group("news@city.test", "新闻", post_policy="anyone")
    groups = {g.address: g for g in await mb.addressbook.groups()}
    g = groups["office-all@city.test"]
    assert g.members == ("wangfang@city.test", "wangwei@city.test") and g.posters == ("li@city.test",)
    assert g.post_policy == "posters" and groups["news@city.test"].post_policy == "anyone"
    assert [x.address for x in await mb.addressbook.search_groups("全体")] == ["office-all@city.test"]
    assert [x.address for x in await mb.addressbook.search_groups("NEWS")] == ["news@city.test"]


async def test_everyone_and_people_by_address_for_carddav(mb):
    await _org(mb)
    assert [p.address for p in await mb.addressbook.everyone()] == [
        "li@city.test", "wangfang@city.test", "wangwei@city.test"]
    assert len(await mb.addressbook.everyone(limit=2)) == 2
    found = await mb.addressbook.people(["WANGFANG@city.test", "gone@city.test", "nobody@city.test"])
    assert [p.address for p in found] == ["wangfang@city.test"]
