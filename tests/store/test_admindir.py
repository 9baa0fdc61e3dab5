"""The admin console's directory reads on SQLite and PostgreSQL: paged, filtered in SQL, scoped to department subtrees."""

from __future__ import annotations

import pytest

from mailboxes.admindir import MAX_PAGE, DirectoryAdmin, subtree
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.model import Department, Role


async def _tree(mb):
    d = mb.directory
    city = await d.add_department("city", "市局")
    fin = await d.add_department("fin", "财务处", parent="city")
    audit = await d.add_department("audit", "审计科", parent="fin")
    hr = await d.add_department("hr", "人事处")
    for i in range(7):
        await d.add_account(f"f{i}@city.test", password=None, display_name=f"财务{i}", department="fin")
    await d.add_account("zhang@city.test", password=None, display_name="张伟", department="audit")
    await d.add_account("li_%@city.test", password=None, display_name="Li", department="hr")
    await d.add_account("root@city.test", password=None, role=Role.ADMIN)
    return city, fin, audit, hr


async def test_accounts_come_a_page_at_a_time_with_a_count(mb):
    _, fin, audit, hr = await _tree(mb)
    admin = DirectoryAdmin(mb.directory)
    page = await admin.search_accounts(offset=0, limit=3)
    assert page.total == 10 and [a.address for a in page.items] == ["f0@city.test", "f1@city.test", "f2@city.test"]
    page = await admin.search_accounts(offset=9, limit=3)
    assert [a.address for a in page.items] == ["zhang@city.test"]
    page = await admin.search_accounts(query="张", limit=10)
    assert [a.address for a in page.items] == ["zhang@city.test"] and page.total == 1
    page = await admin.search_accounts(query="F3@", limit=10)  # address, case-blind
    assert [a.address for a in page.items] == ["f3@city.test"]
    page = await admin.search_accounts(query="_%", limit=10)  # LIKE wildcards are literal
    assert [a.address for a in page.items] == ["li_%@city.test"]
    page = await admin.search_accounts(departments={audit.id, fin.id}, limit=50)
    assert page.total == 8 and "li_%@city.test" not in [a.address for a in page.items]
    assert (await admin.search_accounts(departments=set(), limit=5)).total == 0
    for bad in ({"offset": -1}, {"limit": 0}, {"limit": MAX_PAGE + 1}):
        with pytest.raises(InvalidInput):
            await admin.search_accounts(**bad)


async def test_subtrees_groups_aliases_and_edits(mb):
    city, fin, audit, hr = await _tree(mb)
    admin = DirectoryAdmin(mb.directory)
    assert await admin.subtree(fin.id) == {fin.id, audit.id}
    assert await admin.subtree(city.id) == {city.id, fin.id, audit.id}
    d = mb.directory
    await d.add_group("fin-all@city.test", "财务全体", department="fin")
    await d.add_group("hr-all@city.test", "人事全体", department="hr")
    page = await admin.groups(departments={fin.id, audit.id})
    assert [g.address for g in page.items] == ["fin-all@city.test"] and page.items[0].department_id == fin.id
    await d.add_alias("boss@city.test", "zhang@city.test")
    await d.add_alias("hire@city.test", "li_%@city.test")
    page = await admin.aliases(departments={fin.id, audit.id})
    assert page.items == [("boss@city.test", "zhang@city.test", audit.id)] and page.total == 1
    assert (await admin.alias("HIRE@city.test"))[2] == hr.id
    acct = await admin.update_account("zhang@city.test", display_name="张伟伟", department="hr",
                                      role="department_admin")
    assert (acct.display_name, acct.department_code, acct.role) == ("张伟伟", "hr", Role.DEPARTMENT_ADMIN)
    acct = await admin.update_account("zhang@city.test", department=None, enabled=False, quota_bytes=7,
                                      quota_messages=3)
    assert (acct.department_id, acct.display_name, acct.enabled, acct.quota_bytes, acct.quota_messages) == \
        (None, "张伟伟", False, 7, 3)
    with pytest.raises(InvalidInput):
        await admin.update_account("zhang@city.test", quota_bytes=-1)
    with pytest.raises(NotFound):
        await admin.update_account("zhang@city.test", enabled=True, department="nowhere")
    assert not (await mb.directory.account("zhang@city.test")).enabled  # nothing of a refused change is written
    await admin.remove_group("fin-all@city.test")
    assert (await admin.groups()).total == 1
    assert (await admin.rename_department("FIN", "财务与资产处")).name == "财务与资产处"


def test_subtree_of_a_cycle_ends():
    depts = [Department(1, "a", "A", 2, "department"), Department(2, "b", "B", 1, "department")]
    assert subtree(depts, 1) == {1, 2}
